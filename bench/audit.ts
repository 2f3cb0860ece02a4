// Audit on/off benchmark: what the durable, hash-chained audit log costs on the data plane.
// Two daemons of the same build (`hyokd serve`, dist/src/cli/main.js), each on its own
// HYOKD_HOME (a data folder has one owner), both up for the whole run: "on" with the
// shipped defaults (audit.enabled=true: every record fsync'd before the response, group
// commit, HSM-signed checkpoints), "off" with HYOKD_AUDIT_ENABLED=false, the supported
// benchmark-only switch (the daemon warns at start). Closed-loop unary Unwrap and
// BatchUnwrap x64 from bench/loadgen, one side's window right after the other's, in
// rounds whose order alternates; figure = mean over the rounds. (Until the tenth pass each
// round started the sides one after the other and the figure was the best round: on this
// shared machine that compared moments of different speed; bench/RESULTS.md.) Then the AuditWriter alone, in this
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
import { median } from './lib/stats.js';
import { auditWriterCost, sampleRequestEvent, type WriterCost } from './loadgen/audit-writer-cost.js';
import { startDaemon, type Daemon } from './loadgen/daemon.js';
import { generatorCpuSource, generatorSummary, LOAD_HEADER, loadRow, saturation } from './loadgen/report.js';
import { problems, runLoad, type LoadResult } from './loadgen/run.js';
import {
  BATCH_SIZE,
  benchTiming,
  generatorFromEnv,
  loadSpec,
  shapeFromEnv,
  tempWorkspace,
} from './loadgen/shape.js';
import { framesFor, makeWorkload, verifyCaptures, type Workload } from './loadgen/workload.js';
import { log, runBench } from './lib/script.js';

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
  // Both sides up at once, each on its own HYOKD_HOME (a data folder has one owner), so
  // their windows can alternate closely: on this shared machine the speed drifts within
  // seconds, and a side measured minutes after the other compared noise more than audit.
  const daemons = new Map<Audit, Daemon>();
  const ws = tempWorkspace('hyokd-bench-audit-', async () => {
    await Promise.all([...daemons.values()].map((d) => d.stop()));
  });
  const homes: Record<Audit, string> = { on: join(ws.dir, 'home-on'), off: join(ws.dir, 'home-off') };
  const auditDir = join(homes.on, 'audit');

  const results = new Map<CaseName, LoadResult[]>();
  let checked = 0;
  let mismatches = 0;
  /** Records the "on" daemon added from the end of its warm-up to the end of the last window. */
  let auditRecords = 0;
  const writerCosts: WriterCost[] = [];
  /** The writer alone, Unwrap records, with reserved space (default) and with plain appends, alternating. */
  const reserveRuns: { reserved: WriterCost[]; appends: WriterCost[] } = { reserved: [], appends: [] };
  try {
    // Each first start creates that home's embedded default (token, KEK, PKI, store); the
    // envelopes are made on each side's own KEK. Metrics on a free port: two daemons.
    const sides = new Map<Audit, { d: Daemon; frames: Record<Kind, Uint8Array[]>; workload: Workload }>();
    for (const audit of ['on', 'off'] as Audit[]) {
      const d = await startDaemon(homes[audit], {
        HYOKD_METRICS_LISTEN: '127.0.0.1:0',
        ...(audit === 'off' ? { HYOKD_AUDIT_ENABLED: 'false' } : {}),
      });
      daemons.set(audit, d);
      const workload = await makeWorkload(d.target, ENVELOPES);
      const frames = {
        unary: framesFor('unary', workload, BATCH_SIZE),
        batch: framesFor('batch', workload, BATCH_SIZE),
      };
      sides.set(audit, { d, frames, workload });
    }
    const warm = { ...timing, warmup: 0, seconds: timing.quick ? 0.3 : 1 };
    log(
      `bench:audit: both daemons up (audit on / HYOKD_AUDIT_ENABLED=false), their windows alternating; ` +
        `4 cases x ${timing.rounds} round(s), ${timing.warmup} s warm-up + ${timing.seconds} s each${timing.quick ? ' (QUICK)' : ''}`,
    );
    // Untimed load first, so no side is measured with cold code.
    for (const [, side] of sides)
      for (const kind of ['unary', 'batch'] as Kind[])
        await runLoad(loadSpec(kind, side.d.target, side.frames[kind], shape, warm), side.d.pid);
    const before = auditLines(auditDir);
    for (let round = 0; round < timing.rounds; round++) {
      // Alternate which side and which RPC go first, so drift does not favour one.
      const order: Audit[] = round % 2 === 0 ? ['on', 'off'] : ['off', 'on'];
      const kinds: Kind[] = round % 4 < 2 ? ['unary', 'batch'] : ['batch', 'unary'];
      for (const kind of kinds) {
        for (const audit of order) {
          const side = sides.get(audit)!;
          const name: CaseName = `${kind}_${audit}`;
          const r = await runLoad(
            loadSpec(kind, side.d.target, side.frames[kind], shape, timing),
            side.d.pid,
          );
          const v = verifyCaptures(kind, side.workload, BATCH_SIZE, r.captures);
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
    }
    for (const d of daemons.values()) await d.stop();
    daemons.clear();
    auditRecords = auditLines(auditDir) - before;
    // The writer alone, fed like the daemon feeds it, with records the daemon just wrote.
    for (const [op, burst, bursts] of WRITER_CASES) {
      const sample = sampleRequestEvent(auditDir, op);
      if (sample) writerCosts.push(await auditWriterCost(ws.dir, sample, burst, timing.quick ? 4 : bursts));
    }
    // Reserved space against plain appends (audit.reserveBytes 0), same records, in turns.
    const sample = sampleRequestEvent(auditDir, 'Unwrap');
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
  // Every window has the same length: the pooled rate of a case is the mean of its rounds.
  const meanOf = (n: CaseName, f: (r: LoadResult) => number) => {
    const rs = runs(n);
    return rs.reduce((a, r) => a + f(r), 0) / rs.length;
  };
  const rate = (n: CaseName) => meanOf(n, (r) => r.okItemsPerSec);
  /** The round whose rate is the median of the case's (for the saturation summary). */
  const medianRun = (n: CaseName) => {
    const rs = [...runs(n)].sort((a, b) => a.okItemsPerSec - b.okItemsPerSec);
    return rs[Math.floor((rs.length - 1) / 2)];
  };
  const unaryOn = rate('unary_on');
  const unaryOff = rate('unary_off');
  const batchOn = rate('batch_on');
  const batchOff = rate('batch_off');
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
    '  two `hyokd serve` children of the same build, both up for the whole run, each on its own HYOKD_HOME (own SoftHSM2 token, KEK, store, PKI):',
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
    `  first ${timing.quick ? 0.3 : 1} s of unary and of batch load untimed on each; then each round measures unary and batch on both, the two sides' windows back to back`,
  );
  out.push(
    `  each case ${timing.warmup} s warm-up + ${timing.seconds} s measured, ${timing.rounds} round(s); on/off order swapped every round, unary/batch every other; figure = mean over the rounds (the same length each)`,
  );
  out.push('');
  const rows: string[][] = [];
  for (const [n, rs] of results) rs.forEach((r, i) => rows.push(loadRow(n, i, r, 'items')));
  out.push(table(LOAD_HEADER, rows));
  out.push('  (batch rates are DEKs/s)');
  out.push('');
  out.push('which side saturated (the median round of each case)');
  for (const n of ['unary_on', 'unary_off', 'batch_on', 'batch_off'] as CaseName[]) {
    const r = medianRun(n);
    if (r) out.push(`  ${n.padEnd(9)} ${saturation(r, machine.cores, shape.workers)}`);
  }
  out.push('');
  out.push('results (mean over the rounds)');
  out.push(
    `  unary Unwrap   on ${fmtRate(unaryOn)} / off ${fmtRate(unaryOff)} calls/s  ratio ${fmtRatio(ratioUnary)} (median of per-round ratios ${fmtRatio(perRound('unary'))})`,
  );
  out.push(
    `  BatchUnwrap    on ${fmtRate(batchOn)} / off ${fmtRate(batchOff)} DEKs/s   ratio ${fmtRatio(ratioBatch)} (median of per-round ratios ${fmtRatio(perRound('batch'))})`,
  );
  // CPU per DEK of the server over all rounds: steadier than rates on a crowded machine.
  const us = (n: CaseName, which: 'serverCores' | 'serverMainThread') =>
    (meanOf(n, (r) => r.cpu[which]) * 1e6) / rate(n);
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

runBench('bench:audit', main);
