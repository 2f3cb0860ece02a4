// Audit on/off benchmark: what the durable, hash-chained audit log costs on the data plane.
// Two daemons from the same build (`hyokd serve`, dist/src/cli/main.js) share ONE
// HYOKD_HOME, so one SoftHSM2 token, KEK, store, policy and certificates: "on" with the
// shipped defaults (audit.enabled=true: every record fsync'd before the response, group
// commit, HSM-signed checkpoints), "off" with HYOKD_AUDIT_ENABLED=false, the supported
// benchmark-only switch (the daemon warns at start). Both run the whole time; only the
// one being measured gets traffic. Closed-loop unary Unwrap and BatchUnwrap x64 from
// bench/loadgen, in interleaved rounds whose order alternates; figure = best round.
// Usage:
//   npm run bench:audit            (2 s per case, 0.5 s warm-up, 4 rounds)
//   QUICK=1 npm run bench:audit    (smoke run)
// Knobs: bench/lib/timing.ts, bench/loadgen/shape.ts. Last line: JSON.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fmtAgainstTarget, fmtRate, fmtRatio, roundRatio, table } from './lib/format.js';
import { describeMachine, machineInfo } from './lib/machine.js';
import { best, median } from './lib/stats.js';
import { auditWriterCost, sampleRequestEvent, type WriterCost } from './loadgen/audit-writer-cost.js';
import { startDaemon, type Daemon } from './loadgen/daemon.js';
import { cpuPerOp, LOAD_HEADER, loadRow, saturation } from './loadgen/report.js';
import { problems, runLoad, type LoadResult } from './loadgen/run.js';
import { BATCH_SIZE, benchTiming, loadSpec, shapeFromEnv, tempWorkspace } from './loadgen/shape.js';
import { framesFor, makeWorkload, verifyCaptures } from './loadgen/workload.js';

const ENVELOPES = 256;
const TARGET = 0.9;
/** Writer-alone cases: record of which RPC, appends at once (about what the closed loops keep in flight). */
const WRITER_CASES: Array<[string, number]> = [
  ['Unwrap', 256],
  ['BatchUnwrap', 64],
];

type Kind = 'unary' | 'batch';
type Audit = 'on' | 'off';
type CaseName = `${Kind}_${Audit}`;

function log(line: string): void {
  process.stderr.write(line + '\n');
}

/** Records in the audit files (one JSON object per line). */
function auditLines(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.jsonl')) continue;
    const text = readFileSync(join(dir, f), 'utf8');
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  }
  return n;
}

async function main(): Promise<void> {
  const timing = benchTiming();
  const shape = shapeFromEnv();
  const machine = machineInfo();
  const started = performance.now();
  const daemons: Partial<Record<Audit, Daemon>> = {};
  const ws = tempWorkspace('hyokd-bench-audit-', async () => {
    await Promise.all(Object.values(daemons).map((d) => d.stop()));
  });
  const home = join(ws.dir, 'home');

  const results = new Map<CaseName, LoadResult[]>();
  let checked = 0;
  let mismatches = 0;
  const auditRecords = { before: 0, after: 0 };
  const writerCosts: WriterCost[] = [];
  try {
    // "on" first: it creates the embedded default (token, KEK, PKI) the other reuses.
    daemons.on = await startDaemon(home);
    daemons.off = await startDaemon(home, { HYOKD_AUDIT_ENABLED: 'false' });
    const workload = await makeWorkload(daemons.on.target, ENVELOPES);
    const frames = {
      unary: framesFor('unary', workload, BATCH_SIZE),
      batch: framesFor('batch', workload, BATCH_SIZE),
    };
    const cases: CaseName[] = ['unary_on', 'unary_off', 'batch_on', 'batch_off'];
    // Both daemons get the same untimed traffic first, so neither is measured cold (the
    // "on" one alone served the setup calls).
    const warm = { ...timing, warmup: 0, seconds: timing.quick ? 0.3 : 1 };
    for (const audit of ['on', 'off'] as Audit[]) {
      for (const kind of ['unary', 'batch'] as Kind[]) {
        await runLoad(loadSpec(kind, daemons[audit]!.target, frames[kind], shape, warm), daemons[audit]!.pid);
      }
    }
    auditRecords.before = auditLines(join(home, 'audit'));
    log(
      `bench:audit: daemons pid ${daemons.on.pid} (audit on) and ${daemons.off.pid} (audit off), one HYOKD_HOME; ` +
        `${cases.length} cases x ${timing.rounds} round(s), ${timing.warmup} s warm-up + ${timing.seconds} s each${timing.quick ? ' (QUICK)' : ''}`,
    );
    for (let round = 0; round < timing.rounds; round++) {
      // Alternate which side goes first, so drift does not favour one.
      const order =
        round % 2 === 0 ? cases : (['unary_off', 'unary_on', 'batch_off', 'batch_on'] as CaseName[]);
      for (const name of order) {
        const [kind, audit] = name.split('_') as [Kind, Audit];
        const d = daemons[audit]!;
        const r = await runLoad(loadSpec(kind, d.target, frames[kind], shape, timing), d.pid);
        const v = verifyCaptures(kind, workload, BATCH_SIZE, r.captures);
        checked += v.checked;
        mismatches += v.mismatches;
        const list = results.get(name) ?? [];
        list.push(r);
        results.set(name, list);
        log(
          `  round ${round + 1} ${name.padEnd(9)} ${fmtRate(r.okItemsPerSec).padStart(8)} ${kind === 'batch' ? 'DEKs/s' : 'calls/s'}` +
            `  server ${r.cpu.serverCores.toFixed(2)} (JS ${r.cpu.serverMainThread.toFixed(2)}) gen ${r.cpu.generatorCores.toFixed(2)}` +
            (problems(r) ? `  PROBLEMS ${problems(r)} ${JSON.stringify(r.nonOk)}` : ''),
        );
      }
    }
    auditRecords.after = auditLines(join(home, 'audit'));
    // The writer alone, fed like the daemon feeds it, with records the daemon just wrote.
    for (const [op, burst] of WRITER_CASES) {
      const sample = sampleRequestEvent(join(home, 'audit'), op);
      if (sample) writerCosts.push(await auditWriterCost(ws.dir, sample, burst, timing.quick ? 1 : 4));
    }
  } finally {
    await ws.close();
  }

  // --- reduce -----------------------------------------------------------------------
  const runs = (n: CaseName) => results.get(n) ?? [];
  const bestRate = (n: CaseName) => best(runs(n).map((r) => r.okItemsPerSec));
  const bestRun = (n: CaseName) =>
    runs(n).reduce<LoadResult | undefined>(
      (a, r) => (a && a.okItemsPerSec >= r.okItemsPerSec ? a : r),
      undefined,
    );
  const unaryOn = bestRate('unary_on');
  const unaryOff = bestRate('unary_off');
  const batchOn = bestRate('batch_on');
  const batchOff = bestRate('batch_off');
  const ratioUnary = unaryOn / unaryOff;
  const ratioBatch = batchOn / batchOff;
  const ratio = Math.min(ratioUnary, ratioBatch);
  const perRound = (k: Kind) =>
    median(
      runs(`${k}_on`).map((r, i) => r.okItemsPerSec / (runs(`${k}_off`)[i]?.okItemsPerSec ?? Number.NaN)),
    );
  let totalProblems = 0;
  // Every call answered inside an "on" window has at least one audit record (a batch may
  // be one record for all its items), so the log must have grown by at least that much.
  let callsOn = 0;
  for (const [n, rs] of results)
    for (const r of rs) {
      totalProblems += problems(r);
      if (n.endsWith('_on')) callsOn += r.calls;
    }

  // --- report -----------------------------------------------------------------------
  const out: string[] = [];
  out.push(
    'hyokd audit on/off benchmark: Unwrap and BatchUnwrap x64 over mutual TLS, with and without the audit log',
  );
  out.push('');
  out.push('machine');
  for (const l of describeMachine(machine)) out.push('  ' + l);
  out.push('');
  out.push('method');
  out.push(
    '  two `hyokd serve` children of the same build sharing one HYOKD_HOME (same SoftHSM2 token, KEK, store, PKI):',
  );
  out.push(
    "    on  = shipped defaults (audit.enabled=true: record fsync'd before the response, group commit, HSM-signed checkpoints)",
  );
  out.push(
    "    off = HYOKD_AUDIT_ENABLED=false (the configuration's benchmark-only switch); the idle one only polls health",
  );
  out.push(`  audit directory on the temp dir's filesystem (fsync is real there, not tmpfs)`);
  out.push(
    `  generator: ${shape.workers} worker threads x ${shape.connections} node:http2 connections, pre-encoded frames;` +
      ` unary ${shape.inflight} and batch ${shape.batchInflight} calls in flight per connection`,
  );
  out.push(
    `  before the rounds, each daemon gets ${timing.quick ? 0.3 : 1} s of unary and of batch load, untimed`,
  );
  out.push(
    `  each case ${timing.warmup} s warm-up + ${timing.seconds} s measured, ${timing.rounds} round(s); on/off order swapped every other round; figure = BEST round`,
  );
  out.push('');
  const rows: string[][] = [];
  for (const [n, rs] of results) rs.forEach((r, i) => rows.push(loadRow(n, i, r, 'items')));
  out.push(table(LOAD_HEADER, rows));
  out.push('  (batch rates are DEKs/s)');
  out.push('');
  out.push('which side saturated (best rounds)');
  for (const n of ['unary_on', 'unary_off', 'batch_on', 'batch_off'] as CaseName[]) {
    const r = bestRun(n);
    if (r) out.push(`  ${n.padEnd(9)} ${saturation(r, machine.cores, shape.workers)}`);
  }
  out.push('');
  out.push('results (best rounds)');
  out.push(
    `  unary Unwrap   on ${fmtRate(unaryOn)} / off ${fmtRate(unaryOff)} calls/s  ratio ${fmtRatio(ratioUnary)} (median of per-round ratios ${fmtRatio(perRound('unary'))})`,
  );
  out.push(
    `  BatchUnwrap    on ${fmtRate(batchOn)} / off ${fmtRate(batchOff)} DEKs/s   ratio ${fmtRatio(ratioBatch)} (median of per-round ratios ${fmtRatio(perRound('batch'))})`,
  );
  // CPU per DEK of the server in the best rounds: steadier than rates on a crowded machine.
  const us = (n: CaseName, which: 'serverCores' | 'serverMainThread') => {
    const r = bestRun(n);
    return r ? cpuPerOp(r.cpu[which], r, 'items') : Number.NaN;
  };
  for (const k of ['unary', 'batch'] as Kind[]) {
    const on = us(`${k}_on`, 'serverMainThread');
    const off = us(`${k}_off`, 'serverMainThread');
    out.push(
      `  ${k.padEnd(6)} server JS thread CPU per DEK: on ${on.toFixed(1)} us, off ${off.toFixed(1)} us` +
        ` (audit adds ${(on - off).toFixed(1)} us; off/on ${fmtRatio(off / on)});` +
        ` whole server process: on ${us(`${k}_on`, 'serverCores').toFixed(1)} us, off ${us(`${k}_off`, 'serverCores').toFixed(1)} us`,
    );
  }
  for (const w of writerCosts) {
    out.push(
      `  AuditWriter alone (in this process, software signer): ${w.records} copies of a ${w.op} record of ~${w.bytes} bytes` +
        ` in bursts of ${w.burst}: ${w.cpuMicrosPerRecord.toFixed(1)} us of CPU per record, ${w.fsyncs} fsyncs, ${w.wallMs.toFixed(0)} ms`,
    );
  }
  out.push(`  lower ratio    ${fmtAgainstTarget(ratio, TARGET)}`);
  out.push(
    `  audit records written during the measured cases: ${auditRecords.after - auditRecords.before}` +
      ` (must be >= ${callsOn}, the calls answered inside the windows of the "on" cases; warm-ups and checkpoints add more)`,
  );
  out.push(
    `  correctness: ${totalProblems} non-OK/failed calls or items, ${mismatches} wrong DEKs of ${checked} checked`,
  );
  out.push(`  wall time ${((performance.now() - started) / 1000).toFixed(0)} s`);
  out.push('');
  process.stdout.write(out.join('\n') + '\n');
  const json = {
    unary_on: Math.round(unaryOn),
    unary_off: Math.round(unaryOff),
    batch_on: Math.round(batchOn),
    batch_off: Math.round(batchOff),
    ratio_audit_on_off: roundRatio(ratio),
    ratio_unary: roundRatio(ratioUnary),
    ratio_batch: roundRatio(ratioBatch),
    audit_records: auditRecords.after - auditRecords.before,
    unary_js_us_on: roundRatio(us('unary_on', 'serverMainThread')),
    unary_js_us_off: roundRatio(us('unary_off', 'serverMainThread')),
    batch_js_us_per_dek_on: roundRatio(us('batch_on', 'serverMainThread')),
    batch_js_us_per_dek_off: roundRatio(us('batch_off', 'serverMainThread')),
    writer_cpu_us_per_record: Object.fromEntries(
      writerCosts.map((w) => [w.op, roundRatio(w.cpuMicrosPerRecord)]),
    ),
    errors: totalProblems,
    dek_checked: checked,
    dek_mismatches: mismatches,
    quick: timing.quick,
  };
  process.stdout.write(JSON.stringify(json) + '\n');
  if (totalProblems + mismatches > 0 || auditRecords.after - auditRecords.before < callsOn)
    process.exitCode = 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:audit failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
