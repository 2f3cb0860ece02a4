// The load shape shared by bench:grpc and bench:audit, from the environment:
//   HYOKD_BENCH_GENERATOR     c (default): bench/loadgen/grpc_gen.c, nghttp2 + OpenSSL in a child
//                             process, a few us of CPU per call; node: the node:http2 worker
//                             threads in this process (worker.ts), ~10x the CPU per call
//   HYOKD_BENCH_WORKERS       generator threads (default 2)
//   HYOKD_BENCH_CONNECTIONS   HTTP/2 connections per generator thread (default 2)
//   HYOKD_BENCH_INFLIGHT      unary/echo calls in flight per connection (default 16)
//   HYOKD_BENCH_BATCH_INFLIGHT  BatchUnwrap calls in flight per connection (default 4)
//   HYOKD_BENCH_STREAM_WINDOW messages in flight per UnwrapStream (default 128; one stream per connection)
//   HYOKD_BENCH_OPEN_TICK_US  open loop, C generator: each thread wakes every N us and starts the
//                             calls whose slots have come, each timed from its own slot
//                             (default 1000, the node generator's 1 ms timer; 0 = a wakeup per slot)
//   HYOKD_BENCH_DEADLINE_MS   grpc-timeout of each unary and batch call (default 30000, as a client
//                             would set one; 0 sends none)
// and the duration knobs of bench/lib/timing.ts. QUICK=1 is accepted as a synonym of
// HYOKD_BENCH_QUICK=1.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { timingFromEnv, type Timing } from '../lib/timing.js';
import type { LoadSpec } from './run.js';
import type { CallKind, Target } from './types.js';
import { PATHS } from './workload.js';

export const BATCH_SIZE = 64;

export interface Shape {
  workers: number;
  connections: number;
  inflight: number;
  batchInflight: number;
  streamWindow: number;
  deadlineMs: number;
  openTickUs: number;
}

/** An integer knob from the environment: `fallback` when unset, else min..max or an error naming it. */
export function intFromEnv(name: string, fallback: number, max: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new Error(`${name} must be an integer between ${min} and ${max} (got "${raw}")`);
  }
  return v;
}

export type GeneratorKind = 'c' | 'node';

/** Which load generator runLoad uses (HYOKD_BENCH_GENERATOR). */
export function generatorFromEnv(): GeneratorKind {
  const raw = process.env.HYOKD_BENCH_GENERATOR ?? '';
  if (raw === '' || raw === 'c') return 'c';
  if (raw === 'node') return 'node';
  throw new Error(`HYOKD_BENCH_GENERATOR must be "c" or "node" (got "${raw}")`);
}

export function shapeFromEnv(): Shape {
  return {
    workers: intFromEnv('HYOKD_BENCH_WORKERS', 2, 16),
    connections: intFromEnv('HYOKD_BENCH_CONNECTIONS', 2, 64),
    inflight: intFromEnv('HYOKD_BENCH_INFLIGHT', 16, 1024),
    batchInflight: intFromEnv('HYOKD_BENCH_BATCH_INFLIGHT', 4, 256),
    streamWindow: intFromEnv('HYOKD_BENCH_STREAM_WINDOW', 128, 256),
    deadlineMs: intFromEnv('HYOKD_BENCH_DEADLINE_MS', 30_000, 99_999_999, 0),
    openTickUs: intFromEnv('HYOKD_BENCH_OPEN_TICK_US', 1000, 1_000_000, 0),
  };
}

export function benchTiming(): Timing {
  if (['1', 'true', 'yes'].includes((process.env.QUICK ?? '').toLowerCase())) {
    process.env.HYOKD_BENCH_QUICK ??= '1';
  }
  return timingFromEnv();
}

/** A closed-loop (or open-loop when `rate` is given) load of one RPC. */
export function loadSpec(
  kind: CallKind,
  target: Target,
  frames: Uint8Array[],
  shape: Shape,
  timing: Timing,
  rate?: number,
): LoadSpec {
  const open = rate !== undefined;
  return {
    target,
    kind,
    path: PATHS[kind],
    frames,
    workers: shape.workers,
    connections: shape.connections,
    mode: open ? 'open' : 'closed',
    concurrency:
      kind === 'stream' ? shape.streamWindow : kind === 'batch' ? shape.batchInflight : shape.inflight,
    streamsPerConnection: 1,
    rate: rate ?? 0,
    // Open loop: far more than the calls a healthy server has outstanding at this rate
    // (rate x p99); skips are counted and reported, never hidden.
    maxOutstanding: 2000,
    warmupMs: timing.warmup * 1000,
    measureMs: timing.seconds * 1000,
    deadlineMs: shape.deadlineMs,
    openTickUs: shape.openTickUs,
    captureEvery: kind === 'batch' ? 7 : 97,
    maxCaptures: 20,
  };
}

/** A temp dir removed on exit, SIGINT and SIGTERM (after `onStop`, e.g. stopping daemons). */
export function tempWorkspace(
  prefix: string,
  onStop: () => Promise<void>,
): { dir: string; close(): Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= onStop()
      .catch(() => undefined)
      .then(() => rmSync(dir, { recursive: true, force: true })));
  const onSignal = () => {
    void close().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return { dir, close };
}
