// Audit on/off benchmark: what the durable, hash-chained audit log costs on the data plane.
// The same build (`hyokd serve`, dist/src/cli/main.js) on ONE HYOKD_HOME, so one SoftHSM2
// token, KEK, store, policy and set of certificates: "on" with the shipped defaults
// (audit.enabled=true: every record fsync'd before the response, group commit,
// HSM-signed checkpoints), "off" with HYOKD_AUDIT_ENABLED=false, the supported
// benchmark-only switch (the daemon warns at start). A data folder has one owner, so each
// round starts a fresh daemon per side, warms it untimed, measures, and stops it.
// Closed-loop unary Unwrap and BatchUnwrap x64 from bench/loadgen, in interleaved rounds
// whose order alternates; figure = best round. Then the AuditWriter alone, in this
// process, fed copies of a record the daemon wrote: its CPU per record, and reserved space
// (the default) against plain appends (audit.reserveBytes 0) in alternating turns.
// Usage:
//   npm run bench:audit            (2 s per case, 0.5 s warm-up, 4 rounds)
//   QUICK=1 npm run bench:audit    (smoke run)
// Knobs: bench/lib/timing.ts, bench/loadgen/shape.ts. Last line: JSON.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fmtAgainstTarget, fmtRate, fmtRatio, roundRatio, table } from './lib/format.js';
import { machineInfo, reportHead } from './lib/machine.js';
import { best, median } from './lib/stats.js';
import { auditWriterCost, sampleRequestEvent, type WriterCost } from './loadgen/audit-writer-cost.js';
import { startDaemon, type Daemon } from './loadgen/daemon.js';
import {
  cpuPerOp,
  generatorCpuSource,
  generatorSummary,
  LOAD_HEADER,
  loadRow,
  saturation,
} from './loadgen/report.js';
import { problems, runLoad, type LoadResult } from './loadgen/run.js';
import {
  BATCH_SIZE,
  benchTiming,
  generatorFromEnv,
  loadSpec,
  shapeFromEnv,
  tempWorkspace,
} from './loadgen/shape.js';
import { framesFor, makeWorkload, verifyCaptures } from './loadgen/workload.js';

const ENVELOPES = 256;
const TARGET = 0.9;
/**
 * Writer-alone cases: record of which RPC, appends at once (what the closed loops keep in
 * flight: 2 threads x 2 connections x 16 unary calls, x 4 batch calls, one record per
 * batch call), and bursts measured (enough event-loop CPU for the 10 ms ticks it is read in).
 */
const WRITER_CASES: Array<[string, number, number]> = [
  ['Unwrap', 64, 256],
  ['BatchUnwrap', 16, 128],
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
  // One daemon at a time: a data folder has one owner (token directory, audit log).
  let current: Daemon | undefined;
  const ws = tempWorkspace('hyokd-bench-audit-', async () => {
    await current?.stop();
  });
  const home = join(ws.dir, 'home');

  const results = new Map<CaseName, LoadResult[]>();
  let checked = 0;
  let mismatches = 0;
  /** Records the "on" daemons added while they were measured (warm-ups excluded). */
  let auditRecords = 0;
  const writerCosts: WriterCost[] = [];
  /** The writer alone, Unwrap records, with reserved space (default) and with plain appends, alternating. */
  const reserveRuns: { reserved: WriterCost[]; appends: WriterCost[] } = { reserved: [], appends: [] };
  try {
    // The first start creates the embedded default (token, KEK, PKI, store) every later
    // start reuses; the envelopes are made once, on it.
    current = await startDaemon(home);
    const workload = await makeWorkload(current.target, ENVELOPES);
    await current.stop();
    current = undefined;
    const frames = {
      unary: framesFor('unary', workload, BATCH_SIZE),
      batch: framesFor('batch', workload, BATCH_SIZE),
    };
    const warm = { ...timing, warmup: 0, seconds: timing.quick ? 0.3 : 1 };
    log(
      `bench:audit: one HYOKD_HOME, a fresh daemon per side per round (audit on / HYOKD_AUDIT_ENABLED=false); ` +
        `4 cases x ${timing.rounds} round(s), ${timing.warmup} s warm-up + ${timing.seconds} s each${timing.quick ? ' (QUICK)' : ''}`,
    );
    for (let round = 0; round < timing.rounds; round++) {
      // Alternate which side and which RPC go first, so drift does not favour one.
      const sides: Audit[] = round % 2 === 0 ? ['on', 'off'] : ['off', 'on'];
      const kinds: Kind[] = round % 2 === 0 ? ['unary', 'batch'] : ['batch', 'unary'];
      for (const audit of sides) {
        const d = await startDaemon(home, audit === 'off' ? { HYOKD_AUDIT_ENABLED: 'false' } : {});
        current = d;
        // Untimed load first, so no side is measured with cold code.
        for (const kind of kinds) await runLoad(loadSpec(kind, d.target, frames[kind], shape, warm), d.pid);
        const before = audit === 'on' ? auditLines(join(home, 'audit')) : 0;
        for (const kind of kinds) {
          const name: CaseName = `${kind}_${audit}`;
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
        if (audit === 'on') auditRecords += auditLines(join(home, 'audit')) - before;
        await d.stop();
        current = undefined;
      }
    }
    // The writer alone, fed like the daemon feeds it, with records the daemon just wrote.
    for (const [op, burst, bursts] of WRITER_CASES) {
      const sample = sampleRequestEvent(join(home, 'audit'), op);
      if (sample) writerCosts.push(await auditWriterCost(ws.dir, sample, burst, timing.quick ? 4 : bursts));
    }
    // Reserved space against plain appends (audit.reserveBytes 0), same records, in turns.
    const sample = sampleRequestEvent(join(home, 'audit'), 'Unwrap');
    if (sample) {
      const [, burst, bursts] = WRITER_CASES[0]!;
      for (let i = 0; i < (timing.quick ? 1 : 3); i++) {
        reserveRuns.reserved.push(await auditWriterCost(ws.dir, sample, burst, timing.quick ? 4 : bursts));
        reserveRuns.appends.push(await auditWriterCost(ws.dir, sample, burst, timing.quick ? 4 : bursts, 0));
      }
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
  const out = reportHead(
    'hyokd audit on/off benchmark: Unwrap and BatchUnwrap x64 over mutual TLS, with and without the audit log',
    machine,
  );
  out.push(
    '  `hyokd serve` children of the same build on one HYOKD_HOME (same SoftHSM2 token, KEK, store, PKI), one at a time:',
  );
  out.push(
    "    on  = shipped defaults (audit.enabled=true: record fsync'd before the response, group commit, HSM-signed checkpoints)",
  );
  out.push("    off = HYOKD_AUDIT_ENABLED=false (the configuration's benchmark-only switch)");
  out.push(`  audit directory on the temp dir's filesystem (fsync is real there, not tmpfs)`);
  out.push(
    `  generator: ${generatorSummary(shape)}, pre-encoded frames;` +
      ` unary ${shape.inflight} and batch ${shape.batchInflight} calls in flight per connection,` +
      ` ${shape.deadlineMs > 0 ? `grpc-timeout ${shape.deadlineMs} ms` : 'no grpc-timeout'} on each`,
  );
  out.push(
    `  cpu: server from /proc/<pid>/stat (+ its main thread = the JS thread), generator from ${generatorCpuSource()}`,
  );
  out.push(
    `  each round, each side: start a daemon, ${timing.quick ? 0.3 : 1} s of unary and of batch load untimed, measure both, stop it`,
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
        ` in bursts of ${w.burst}: ${w.jsMicrosPerRecord.toFixed(1)} us of event-loop CPU per record` +
        ` (${w.cpuMicrosPerRecord.toFixed(1)} us all threads), ${w.fsyncs} durable writes` +
        ` (${w.offloadedBatches} by the helper thread), ${w.wallMs.toFixed(0)} ms`,
    );
  }
  const medianOf = (runs: WriterCost[], f: (w: WriterCost) => number) => median(runs.map(f));
  const reserve =
    reserveRuns.reserved.length > 0
      ? {
          cpu: [
            medianOf(reserveRuns.reserved, (w) => w.cpuMicrosPerRecord),
            medianOf(reserveRuns.appends, (w) => w.cpuMicrosPerRecord),
          ],
          write: [
            medianOf(reserveRuns.reserved, (w) => w.writeMsPerBatch),
            medianOf(reserveRuns.appends, (w) => w.writeMsPerBatch),
          ],
        }
      : null;
  if (reserve) {
    out.push(
      `  AuditWriter alone, reserved space vs plain appends (audit.reserveBytes 0), ${reserveRuns.reserved.length} turn(s) each, medians:` +
        ` ${reserve.cpu[0]!.toFixed(1)} vs ${reserve.cpu[1]!.toFixed(1)} us of CPU per record (all threads),` +
        ` ${reserve.write[0]!.toFixed(2)} vs ${reserve.write[1]!.toFixed(2)} ms per durable batch write` +
        ` (reserved/append: CPU ${fmtRatio(reserve.cpu[0]! / reserve.cpu[1]!)}, write ${fmtRatio(reserve.write[0]! / reserve.write[1]!)})`,
    );
  }
  out.push(`  lower ratio    ${fmtAgainstTarget(ratio, TARGET)}`);
  out.push(
    `  audit records written during the measured cases: ${auditRecords}` +
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
    audit_records: auditRecords,
    unary_js_us_on: roundRatio(us('unary_on', 'serverMainThread')),
    unary_js_us_off: roundRatio(us('unary_off', 'serverMainThread')),
    batch_js_us_per_dek_on: roundRatio(us('batch_on', 'serverMainThread')),
    batch_js_us_per_dek_off: roundRatio(us('batch_off', 'serverMainThread')),
    writer_cpu_us_per_record: Object.fromEntries(
      writerCosts.map((w) => [w.op, roundRatio(w.cpuMicrosPerRecord)]),
    ),
    writer_js_us_per_record: Object.fromEntries(
      writerCosts.map((w) => [w.op, roundRatio(w.jsMicrosPerRecord)]),
    ),
    writer_reserved_vs_append: reserve
      ? {
          cpu_us_per_record: reserve.cpu.map(roundRatio),
          write_ms_per_batch: reserve.write.map(roundRatio),
        }
      : null,
    generator: generatorFromEnv(),
    errors: totalProblems,
    dek_checked: checked,
    dek_mismatches: mismatches,
    quick: timing.quick,
  };
  process.stdout.write(JSON.stringify(json) + '\n');
  if (totalProblems + mismatches > 0 || auditRecords < callsOn) process.exitCode = 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:audit failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
