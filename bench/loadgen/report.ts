// Shared pieces of the load benchmarks' reports: per-round rows and which side saturated.
import { fmtRate } from '../lib/format.js';
import { problems, type LoadResult } from './run.js';
import { generatorFromEnv, type Shape } from './shape.js';

/** What generated the load (HYOKD_BENCH_GENERATOR), for the reports' method section. */
export function generatorSummary(shape: Shape): string {
  return generatorFromEnv() === 'node'
    ? `this process, ${shape.workers} worker threads x ${shape.connections} node:http2 connections`
    : `bench/loadgen/grpc_gen.c in a child process, ${shape.workers} threads x ${shape.connections} connections` +
        ' (nghttp2 + OpenSSL, an epoll loop per thread)';
}

/** Where the generator's CPU time was read. */
export function generatorCpuSource(): string {
  return generatorFromEnv() === 'node'
    ? 'process.cpuUsage() (this process: the worker threads and the coordinator)'
    : '/proc/<grpc_gen pid>/stat (all its threads)';
}

function pct(x: number): string {
  return Number.isFinite(x) ? `${Math.round(x * 100)}%` : '-';
}

/**
 * CPU microseconds per operation (call, or DEK when unit = items): unlike throughput,
 * barely moved by other processes taking cores away, so the steadier basis for ratios
 * on a crowded machine.
 */
export function cpuPerOp(cores: number, r: LoadResult, unit: 'calls' | 'items'): number {
  const rate = unit === 'items' ? r.okItemsPerSec : r.callsPerSec;
  return rate > 0 ? (cores * 1e6) / rate : Number.NaN;
}

function perOp(cores: number, r: LoadResult, unit: 'calls' | 'items'): string {
  const v = cpuPerOp(cores, r, unit);
  return Number.isFinite(v) ? v.toFixed(1) : '-';
}

/** A row of the per-round table. */
export function loadRow(name: string, round: number, r: LoadResult, unit: 'calls' | 'items'): string[] {
  const c = r.cpu;
  return [
    name,
    String(round + 1),
    fmtRate(unit === 'items' ? r.okItemsPerSec : r.callsPerSec),
    Number.isFinite(r.p50Ms) ? r.p50Ms.toFixed(2) : '-',
    Number.isFinite(r.p99Ms) ? r.p99Ms.toFixed(2) : '-',
    c.serverCores.toFixed(2),
    c.serverMainThread.toFixed(2),
    c.generatorCores.toFixed(2),
    Math.max(0, c.machineCores - c.serverCores - c.generatorCores).toFixed(2),
    pct(c.serverMainWait),
    pct(c.cpuPressure),
    perOp(c.serverCores, r, unit),
    perOp(c.serverMainThread, r, unit),
    perOp(c.generatorCores, r, unit),
    String(problems(r)),
    String(r.skipped),
  ];
}

export const LOAD_HEADER = [
  'case',
  'round',
  'rate/s',
  'p50 ms',
  'p99 ms',
  'server cores',
  'server JS thread',
  'generator cores',
  'others',
  'JS wait',
  'cpu pressure',
  'server us/op',
  'JS us/op',
  'gen us/op',
  'errors',
  'skipped',
];

/**
 * Which side limited a closed-loop run, read from CPU over the window: the server's JS
 * thread near a full core, the machine's cores all busy (then the shares say who took
 * them), or neither (latency- or concurrency-bound, e.g. waiting on the HSM workers).
 */
export function saturation(r: LoadResult, cores: number, workers: number): string {
  const c = r.cpu;
  const others = Math.max(0, c.machineCores - c.serverCores - c.generatorCores);
  const shares =
    `server ${c.serverCores.toFixed(2)} (JS thread ${c.serverMainThread.toFixed(2)}, waiting for a CPU ${pct(c.serverMainWait)} of the time),` +
    ` generator ${c.generatorCores.toFixed(2)}, others ${others.toFixed(2)} of ${cores} cores; CPU pressure ${pct(c.cpuPressure)}`;
  if (c.serverMainThread >= 0.85) return `server JS thread saturated; ${shares}`;
  if (c.serverMainThread + c.serverMainWait >= 0.85) {
    return `server JS thread wanted a full core but was crowded out (${pct(c.serverMainWait)} waiting); ${shares}`;
  }
  if (c.generatorCores >= 0.85 * workers) return `generator threads saturated; ${shares}`;
  if (c.machineCores >= 0.9 * cores) {
    const side = c.serverCores >= c.generatorCores ? 'server' : 'generator';
    return `machine CPU saturated (largest share: ${side}); ${shares}`;
  }
  return `no side CPU-bound (waiting: HSM workers or calls in flight); ${shares}`;
}
