// Where finished calls outlive the young generation: the same open-loop load (the C
// generator, mutual TLS, one rate) on each layer of the server stack alone and on hyokd,
// every server started with --trace-gc-nvp, so V8's own accounting says how many bytes
// each call left to be promoted, how often the young generation was scavenged and what
// the mark-compacts cost. Promoted bytes are what fills the old generation and brings the
// mark-compacts that decide the open-loop p99 of bench:grpc (bench/RESULTS.md).
//
//   http2            node:http2 answering like a unary gRPC call (the baseline: ratios are against it)
//   grpc-js          @grpc/grpc-js alone, one pass-through method
//   grpc-js/nodl     the same, the client sending no grpc-timeout (no deadline)
//   grpc-js+proto    @grpc/grpc-js with hyokd's own hyok.v1 service definition (its protobuf codec)
//   hyokd-echo       the daemon's Echo (shipped defaults, audit on)
//   hyokd-echo/nodl  the same without a client deadline
//   hyokd-unwrap     the daemon's Unwrap of one envelope
//
// Usage: npm run bench:gc (2 s per case and round, 4 rounds; QUICK=1 for a smoke run).
// Knobs: HYOKD_BENCH_GC_RATE (calls/s, default 3000), bench/lib/timing.ts, bench/loadgen/shape.ts.
// Last line: JSON.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fmtRate, fmtRatio, table } from './lib/format.js';
import { machineInfo, reportHead } from './lib/machine.js';
import { startDaemon, stopChild, waitForPort, type Daemon } from './loadgen/daemon.js';
import { GcTrace } from './loadgen/gc-trace.js';
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
import type { CallKind, Target } from './loadgen/types.js';
import { framesFor, makeWorkload, PATHS } from './loadgen/workload.js';
import { log, runBench } from './lib/script.js';

const CASES = [
  'http2',
  'grpc-js',
  'grpc-js/nodl',
  'grpc-js+proto',
  'hyokd-echo',
  'hyokd-echo/nodl',
  'hyokd-unwrap',
] as const;
type CaseName = (typeof CASES)[number];
const START_TIMEOUT_MS = 20_000;

interface Server {
  pid: number;
  target: Target;
  trace: GcTrace;
  stop(): Promise<void>;
}

/** A bare-server.js child with --trace-gc-nvp, on the daemon's PKI. */
async function startBare(
  kind: 'http2' | 'grpc-js' | 'grpc-js-proto',
  pki: string,
  like: Target,
): Promise<Server> {
  const script = join(import.meta.dirname, 'loadgen', 'bare-server.js');
  const trace = new GcTrace();
  const args = ['--trace-gc-nvp', script, kind, pki, ...(kind === 'grpc-js-proto' ? [] : [PATHS.echo])];
  const child: ChildProcess = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.setEncoding('utf8').on('data', (d: string) => trace.push(d));
  const port = await waitForPort(child, /bare server on 127\.0\.0\.1:(\d+)/, `bare ${kind} server`, {
    timeoutMs: START_TIMEOUT_MS,
  });
  return {
    pid: child.pid!,
    target: { ...like, port },
    trace,
    stop: () => stopChild(child),
  };
}

async function main(): Promise<void> {
  const timing = benchTiming();
  const shape = shapeFromEnv();
  const rate = intFromEnv('HYOKD_BENCH_GC_RATE', 3000, 1_000_000);
  const machine = machineInfo();
  const started = performance.now();
  const servers: Server[] = [];
  let daemon: Daemon | undefined;
  const ws = tempWorkspace('hyokd-bench-gc-', async () => {
    await Promise.all([daemon?.stop(), ...servers.map((s) => s.stop())]);
  });
  const totals = new Map<CaseName, WindowTotals>(CASES.map((c) => [c, zeroWindowTotals()]));
  try {
    const home = join(ws.dir, 'home');
    const daemonTrace = new GcTrace();
    daemon = await startDaemon(
      home,
      {},
      { nodeArgs: ['--trace-gc-nvp'], onStdout: (d) => daemonTrace.push(d) },
    );
    const hyokd: Server = { pid: daemon.pid, target: daemon.target, trace: daemonTrace, stop: daemon.stop };
    const pki = join(home, 'pki');
    const http2 = await startBare('http2', pki, daemon.target);
    servers.push(http2);
    const grpcJs = await startBare('grpc-js', pki, daemon.target);
    servers.push(grpcJs);
    const grpcJsProto = await startBare('grpc-js-proto', pki, daemon.target);
    servers.push(grpcJsProto);
    const workload = await makeWorkload(daemon.target, 256);
    const echoFrames = framesFor('echo', workload, BATCH_SIZE);
    const unaryFrames = framesFor('unary', workload, BATCH_SIZE);
    const noDeadline = { ...shape, deadlineMs: 0 };
    const plan: Record<
      CaseName,
      { server: Server; kind: CallKind; frames: Uint8Array[]; deadline: boolean }
    > = {
      http2: { server: http2, kind: 'echo', frames: echoFrames, deadline: true },
      'grpc-js': { server: grpcJs, kind: 'echo', frames: echoFrames, deadline: true },
      'grpc-js/nodl': { server: grpcJs, kind: 'echo', frames: echoFrames, deadline: false },
      'grpc-js+proto': { server: grpcJsProto, kind: 'echo', frames: echoFrames, deadline: true },
      'hyokd-echo': { server: hyokd, kind: 'echo', frames: echoFrames, deadline: true },
      'hyokd-echo/nodl': { server: hyokd, kind: 'echo', frames: echoFrames, deadline: false },
      'hyokd-unwrap': { server: hyokd, kind: 'unary', frames: unaryFrames, deadline: true },
    };
    log(
      `bench:gc: ${CASES.length} cases x ${timing.rounds} round(s) at ${fmtRate(rate)} calls/s open loop, ` +
        `${timing.seconds} s each after ${timing.warmup} s untimed${timing.quick ? ' (QUICK)' : ''}`,
    );
    for (let round = 0; round < timing.rounds; round++) {
      const order = round % 2 === 0 ? CASES : [...CASES].reverse();
      for (const name of order) {
        const p = plan[name];
        const s = p.deadline ? shape : noDeadline;
        const spec = (seconds: number) =>
          loadSpec(p.kind, p.server.target, p.frames, s, { ...timing, warmup: 0, seconds }, rate);
        const { result: r, gc } = await measureGcWindow(
          p.server.trace,
          p.server.pid,
          spec,
          timing.warmup,
          timing.seconds,
          totals.get(name)!,
        );
        log(
          `  round ${round + 1} ${name.padEnd(16)} ${fmtRate(r.callsPerSec).padStart(7)} calls/s  p99 ${r.p99Ms.toFixed(1).padStart(6)} ms` +
            `  scavenges ${gc.scavenges} promoted ${(gc.promotedBytes / 1024).toFixed(0)} KB  mark-compacts ${gc.markCompacts}` +
            (problems(r) ? `  PROBLEMS ${problems(r)} ${JSON.stringify(r.nonOk)}` : ''),
        );
      }
    }
  } finally {
    await ws.close();
  }

  const perCall = (c: WindowTotals) => (c.calls > 0 ? c.gc.promotedBytes / c.calls : 0);
  const base = perCall(totals.get('http2')!);
  const out: Record<string, Record<string, number>> = {};
  const rows = CASES.map((name) => {
    const c = totals.get(name)!;
    const g = c.gc;
    const promoted = perCall(c);
    const kcalls = c.calls / 1000;
    const row = {
      calls: c.calls,
      promoted_bytes_per_call: Math.round(promoted),
      ratio_promoted_vs_http2: base > 0 ? Number((promoted / base).toFixed(1)) : 0,
      scavenges_per_1k_calls: Number((g.scavenges / kcalls).toFixed(2)),
      scavenge_ms_per_1k_calls: Number((g.scavengeMs / kcalls).toFixed(2)),
      mark_compacts_per_10k_calls: Number(((g.markCompacts / kcalls) * 10).toFixed(2)),
      mark_compact_mean_ms: g.markCompacts > 0 ? Number((g.markCompactMs / g.markCompacts).toFixed(1)) : 0,
      mark_compact_max_ms: Number(g.markCompactMaxMs.toFixed(1)),
      evacuate_share: g.markCompactMs > 0 ? Number((g.evacuateMs / g.markCompactMs).toFixed(2)) : 0,
      problems: c.problems,
    };
    out[name] = row;
    return [
      name,
      String(row.promoted_bytes_per_call),
      base > 0 ? fmtRatio(promoted / base) : '—',
      row.scavenges_per_1k_calls.toFixed(2),
      row.scavenge_ms_per_1k_calls.toFixed(1),
      row.mark_compacts_per_10k_calls.toFixed(2),
      row.mark_compact_mean_ms.toFixed(1),
      row.evacuate_share.toFixed(2),
      c.p99Ms.map((p) => p.toFixed(1)).join(' '),
    ];
  });
  const lines = [
    ...reportHead('bench:gc: what each layer leaves to be promoted per call', machine),
    `  the C generator (bench/loadgen/grpc_gen.c), open loop at ${fmtRate(rate)} calls/s, ${shape.workers} x ${shape.connections} connections, mutual TLS with the dev PKI;`,
    `  client deadline ${shape.deadlineMs} ms (grpc-timeout) except the /nodl cases; every server runs with --trace-gc-nvp and`,
    '  the figures are V8’s own per collection, summed over the measured windows of all rounds',
    '',
    'results',
    table(
      [
        'case',
        'promoted B/call',
        '÷ http2',
        'scavenges/1k',
        'scav ms/1k',
        'mark-compacts/10k',
        'MC mean ms',
        'evacuate share',
        'p99 per round (ms)',
      ],
      rows,
    ),
    `  wall time ${((performance.now() - started) / 1000).toFixed(0)} s`,
  ];
  process.stdout.write(lines.join('\n') + '\n\n');
  process.stdout.write(
    JSON.stringify({ rate, node: process.version, quick: timing.quick, cases: out }) + '\n',
  );
}

runBench('bench:gc', main);
