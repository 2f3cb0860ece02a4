// Whether turning V8's allocation-site pretenuring off in the daemon (src/cli/pretenuring.ts)
// keeps finished calls from being promoted. Under load some daemon processes, not others,
// settle for their whole life into promoting ~3-5 KB per call instead of 0.1-0.5 KB
// (bench/RESULTS.md sixteenth and seventeenth passes), so one daemon per side says little:
// this starts several daemons of each kind, alternately, each on its own HYOKD_HOME with
// --trace-gc-nvp, and gives each in turn the same open-loop Echo load (the C generator,
// mutual TLS), the order reversed every round.
//
//   shipped     `hyokd serve` as shipped: pretenuring off
//   v8-default  the same started with --allocation-site-pretenuring: V8's default
//
// Per daemon: bytes promoted per call over all its windows; a daemon is counted "high"
// above 1,500 B/call, between the two modes measured (0.1-0.5 KB against 3-5 KB).
// Usage: npm run bench:pretenure (6 daemons of each kind, 2 s per daemon and round,
// 4 rounds; QUICK=1 for a smoke run). Knobs: HYOKD_BENCH_PRETENURE_DAEMONS (per kind),
// HYOKD_BENCH_GC_RATE (calls/s, default 3000), bench/lib/timing.ts, bench/loadgen/shape.ts.
// Last line: JSON.
import { join } from 'node:path';
import { fmtRate, fmtRatio, roundRatio, table } from './lib/format.js';
import { machineInfo, reportHead } from './lib/machine.js';
import { median } from './lib/stats.js';
import { startDaemon, type Daemon } from './loadgen/daemon.js';
import { addTotals, GcTrace, zeroTotals, type GcTotals } from './loadgen/gc-trace.js';
import { measureGcWindow, zeroWindowTotals, type WindowTotals } from './loadgen/gc-window.js';
import { problems } from './loadgen/run.js';
import {
  BATCH_SIZE,
  benchTiming,
  intFromEnv,
  loadSpec,
  shapeFromEnv,
  tempWorkspace,
} from './loadgen/shape.js';
import { framesFor, makeWorkload } from './loadgen/workload.js';
import { PRETENURING_FLAG } from '../src/cli/pretenuring.js';
import { log, runBench } from './lib/script.js';

const KINDS = ['shipped', 'v8-default'] as const;
type Kind = (typeof KINDS)[number];
const HIGH_BYTES_PER_CALL = 1500;

interface Subject extends WindowTotals {
  kind: Kind;
  name: string;
  daemon: Daemon;
  trace: GcTrace;
  frames: Uint8Array[];
}

const promotedPerCall = (calls: number, gc: GcTotals) => (calls > 0 ? gc.promotedBytes / calls : 0);

interface KindSummary {
  daemons: number;
  calls: number;
  promoted_bytes_per_call: number;
  high_daemons: number;
  mark_compacts_per_10k_calls: number;
  median_p99_ms: number;
  problems: number;
}

function summarize(group: Subject[]): KindSummary {
  const calls = group.reduce((n, s) => n + s.calls, 0);
  const gc = zeroTotals();
  for (const s of group) addTotals(gc, s.gc);
  return {
    daemons: group.length,
    calls,
    promoted_bytes_per_call: Math.round(promotedPerCall(calls, gc)),
    high_daemons: group.filter((s) => promotedPerCall(s.calls, s.gc) > HIGH_BYTES_PER_CALL).length,
    mark_compacts_per_10k_calls: calls > 0 ? Number(((gc.markCompacts / calls) * 10_000).toFixed(2)) : 0,
    median_p99_ms: Number(median(group.flatMap((s) => s.p99Ms)).toFixed(1)),
    problems: group.reduce((n, s) => n + s.problems, 0),
  };
}

async function main(): Promise<void> {
  const timing = benchTiming();
  const shape = shapeFromEnv();
  const rate = intFromEnv('HYOKD_BENCH_GC_RATE', 3000, 1_000_000);
  const perKind = intFromEnv('HYOKD_BENCH_PRETENURE_DAEMONS', timing.quick ? 1 : 6, 16);
  const machine = machineInfo();
  const started = performance.now();
  const subjects: Subject[] = [];
  const daemons: Daemon[] = [];
  const ws = tempWorkspace('hyokd-bench-pretenure-', async () => {
    await Promise.all(daemons.map((d) => d.stop()));
  });
  try {
    for (let i = 0; i < perKind; i++) {
      for (const kind of KINDS) {
        const name = `${kind}-${i + 1}`;
        const trace = new GcTrace();
        const nodeArgs = ['--trace-gc-nvp', ...(kind === 'v8-default' ? [PRETENURING_FLAG] : [])];
        const daemon = await startDaemon(
          join(ws.dir, name),
          { HYOKD_METRICS_LISTEN: '127.0.0.1:0' },
          { nodeArgs, onStdout: (d) => trace.push(d) },
        );
        daemons.push(daemon);
        const frames = framesFor('echo', await makeWorkload(daemon.target, 1), BATCH_SIZE);
        subjects.push({ kind, name, daemon, trace, frames, ...zeroWindowTotals() });
      }
    }
    log(
      `bench:pretenure: ${subjects.length} daemons x ${timing.rounds} round(s) of Echo at ${fmtRate(rate)} calls/s open loop, ` +
        `${timing.seconds} s each after ${timing.warmup} s untimed${timing.quick ? ' (QUICK)' : ''}`,
    );
    for (let round = 0; round < timing.rounds; round++) {
      const order = round % 2 === 0 ? subjects : [...subjects].reverse();
      for (const s of order) {
        const spec = (seconds: number) =>
          loadSpec('echo', s.daemon.target, s.frames, shape, { ...timing, warmup: 0, seconds }, rate);
        const { result: r, gc } = await measureGcWindow(
          s.trace,
          s.daemon.pid,
          spec,
          timing.warmup,
          timing.seconds,
          s,
        );
        log(
          `  round ${round + 1} ${s.name.padEnd(13)} ${fmtRate(r.callsPerSec).padStart(7)} calls/s  p99 ${r.p99Ms.toFixed(1).padStart(6)} ms` +
            `  promoted ${promotedPerCall(r.calls, gc).toFixed(0).padStart(5)} B/call  mark-compacts ${gc.markCompacts}` +
            (problems(r) ? `  PROBLEMS ${problems(r)} ${JSON.stringify(r.nonOk)}` : ''),
        );
      }
    }
  } finally {
    await ws.close();
  }

  const perDaemonRows = subjects.map((s) => [
    s.name,
    String(s.calls),
    promotedPerCall(s.calls, s.gc).toFixed(0),
    ((s.gc.markCompacts / s.calls) * 10_000).toFixed(2),
    s.p99Ms.map((p) => p.toFixed(1)).join(' '),
    String(s.problems),
  ]);
  const summary: Record<Kind, KindSummary> = {
    shipped: summarize(subjects.filter((s) => s.kind === 'shipped')),
    'v8-default': summarize(subjects.filter((s) => s.kind === 'v8-default')),
  };
  const a = summary.shipped;
  const b = summary['v8-default'];
  const ratioPromoted = a.promoted_bytes_per_call / b.promoted_bytes_per_call;
  const ratioMc = a.mark_compacts_per_10k_calls / b.mark_compacts_per_10k_calls;
  const ratioP99 = a.median_p99_ms / b.median_p99_ms;
  const lines = [
    ...reportHead('bench:pretenure: the daemon with and without V8 allocation-site pretenuring', machine),
    `  ${perKind} daemon(s) of each kind, started alternately; the C generator, open loop Echo at ${fmtRate(rate)} calls/s,`,
    `  ${shape.workers} x ${shape.connections} connections, mutual TLS, client deadline ${shape.deadlineMs} ms; V8's own --trace-gc-nvp figures`,
    `  summed over each daemon's measured windows; "high" = above ${HIGH_BYTES_PER_CALL} promoted B/call`,
    '',
    'per daemon',
    table(
      ['daemon', 'calls', 'promoted B/call', 'mark-compacts/10k', 'p99 per round (ms)', 'problems'],
      perDaemonRows,
    ),
    '',
    'per kind',
    table(
      ['kind', 'daemons', 'high', 'promoted B/call', 'mark-compacts/10k', 'median p99 ms'],
      KINDS.map((k) => [
        k,
        String(summary[k].daemons),
        String(summary[k].high_daemons),
        String(summary[k].promoted_bytes_per_call),
        summary[k].mark_compacts_per_10k_calls.toFixed(2),
        summary[k].median_p99_ms.toFixed(1),
      ]),
    ),
    `  shipped ÷ v8-default: promoted ${fmtRatio(ratioPromoted)}, mark-compacts ${fmtRatio(ratioMc)}, median p99 ${fmtRatio(ratioP99)}`,
    `  wall time ${((performance.now() - started) / 1000).toFixed(0)} s`,
  ];
  process.stdout.write(lines.join('\n') + '\n\n');
  process.stdout.write(
    JSON.stringify({
      rate,
      node: process.version,
      quick: timing.quick,
      kinds: summary,
      ratio_promoted_shipped_vs_default: roundRatio(ratioPromoted),
      ratio_mark_compacts_shipped_vs_default: roundRatio(ratioMc),
      ratio_median_p99_shipped_vs_default: roundRatio(ratioP99),
    }) + '\n',
  );
}

runBench('bench:pretenure', main);
