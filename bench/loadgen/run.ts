// The load generator's coordinator: starts the generator (by default bench/loadgen/grpc_gen.c
// in a child process; with HYOKD_BENCH_GENERATOR=node the worker threads of worker.ts), lets
// it connect, starts it at an agreed instant, and merges what it reports. Around the
// measured window it reads the CPU time of the server process (/proc), of the generator
// (/proc of the child, or this process's own when the generator runs here) and the
// machine's busy time, so each figure says which side was the bottleneck.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHistogram, performance, type RecordableHistogram } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { buildGrpcGen } from '../lib/c-build.js';
import { systemBusySeconds } from '../lib/procstat.js';
import { cpuPressureSeconds, procCpu } from './proc-cpu.js';
import { generatorFromEnv } from './shape.js';
import type { Capture, FromWorker, WorkerJob, WorkerResult } from './types.js';

export interface LoadSpec extends Omit<WorkerJob, 'frameOffset' | 'rate'> {
  workers: number;
  /** open: total calls per second across all workers. */
  rate: number;
  /** open, C generator: wake every N us for the slots due (0: once per slot). */
  openTickUs: number;
}

export interface CpuWindow {
  seconds: number;
  /** Cores used on average over the window. */
  serverCores: number;
  serverMainThread: number;
  /** Fraction of the window the server's JS thread was runnable but had no CPU. */
  serverMainWait: number;
  generatorCores: number;
  /** Fraction of the window in which some task waited for a CPU (PSI), NaN without PSI. */
  cpuPressure: number;
  /** Busy cores of the whole machine; minus the two above = other processes. */
  machineCores: number;
}

export interface LoadResult {
  spec: Omit<LoadSpec, 'frames' | 'target'>;
  seconds: number;
  calls: number;
  callsPerSec: number;
  okItems: number;
  okItemsPerSec: number;
  failedItems: number;
  nonOk: Record<string, number>;
  transportErrors: number;
  skipped: number;
  abandoned: number;
  histogram: RecordableHistogram;
  p50Ms: number;
  p99Ms: number;
  captures: Capture[];
  cpu: CpuWindow;
}

const START_DELAY_MS = 100;

const now = () => performance.timeOrigin + performance.now();

function sleepUntil(t: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, t - now())));
}

/** Everything a run counts as wrong: non-OK statuses, failed items, transport errors, abandoned calls. */
export function problems(r: LoadResult): number {
  return Object.values(r.nonOk).reduce((a, n) => a + n, 0) + r.failedItems + r.transportErrors + r.abandoned;
}

/** A running load generator, whichever kind. */
interface Generator {
  /** Resolves once every connection is up (never rejects: a failure rejects `done`). */
  ready: Promise<void>;
  /** Start the load at `at` (epoch ms, performance.timeOrigin-based). */
  go(at: number): void;
  /** CPU seconds the generator has used so far, all its threads. */
  cpuSeconds(): number;
  /** The window's CPU has been read: the generator may exit once it has reported. */
  release(): void;
  done: Promise<WorkerResult[]>;
  close(): Promise<void>;
}

/** The node:http2 generator: worker threads of worker.ts in this process. */
function nodeGenerator(spec: LoadSpec): Generator {
  const url = new URL('./worker.js', import.meta.url);
  const workers: Worker[] = [];
  const done: Promise<WorkerResult>[] = [];
  const ready: Promise<void>[] = [];
  const { workers: n, rate, ...common } = spec;
  for (let i = 0; i < n; i++) {
    const job: WorkerJob = {
      ...common,
      rate: rate / n,
      frameOffset: Math.floor((i * spec.frames.length) / n),
    };
    const w = new Worker(url, { workerData: job });
    workers.push(w);
    let onReady!: () => void;
    ready.push(new Promise<void>((r) => (onReady = r)));
    done.push(
      new Promise<WorkerResult>((resolve, reject) => {
        w.on('message', (m: FromWorker) => {
          if (m.type === 'ready') onReady();
          else if (m.type === 'done') resolve(m.result);
          else reject(new Error(`load worker: ${m.error}`));
        });
        w.on('error', reject);
        w.on('exit', (code) => reject(new Error(`load worker exited (${code}) before reporting`)));
      }),
    );
  }
  return {
    ready: Promise.all(ready).then(() => undefined),
    go(at) {
      for (const w of workers) w.postMessage({ type: 'go', at });
    },
    cpuSeconds() {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    },
    release() {},
    done: Promise.all(done),
    async close() {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

const READY_TIMEOUT_MS = 30_000;
/** Past the window: the generator's own 5 s drain, its teardown and some slack. */
const EXIT_SLACK_MS = 30_000;

/** grpc_gen's JSON line (see the header of grpc_gen.c): a WorkerResult with its histogram as buckets. */
type GenOutput = Omit<WorkerResult, 'histogram' | 'captures'> & {
  /** [microseconds, count] per bucket. */
  histogram: Array<[number, number]>;
  captures: Array<{ frame: number; hex: string }>;
};

/** The generator's JSON as a WorkerResult, the histogram rebuilt from its buckets. */
function fromGenOutput(line: string): WorkerResult {
  const j = JSON.parse(line) as GenOutput;
  const counts = ['calls', 'okItems', 'failedItems', 'transportErrors', 'skipped', 'abandoned'] as const;
  for (const k of counts) {
    if (!Number.isInteger(j[k])) throw new Error(`grpc_gen output: ${k} is not an integer`);
  }
  if (!Array.isArray(j.histogram) || !Array.isArray(j.captures) || typeof j.nonOk !== 'object') {
    throw new Error('grpc_gen output: histogram, captures or nonOk missing');
  }
  const histogram = createHistogram();
  for (const [value, count] of j.histogram) for (let i = 0; i < count; i++) histogram.record(value);
  const captures: Capture[] = j.captures.map((c) => ({
    frame: c.frame,
    message: new Uint8Array(Buffer.from(c.hex, 'hex')),
  }));
  return { ...j, histogram, captures };
}

/** bench/loadgen/grpc_gen.c in a child process; frames and PEMs in a private temp dir. */
function cGenerator(spec: LoadSpec): Generator {
  if (spec.kind === 'stream' && spec.streamsPerConnection !== 1) {
    throw new Error('the C generator runs one stream per connection (set HYOKD_BENCH_GENERATOR=node)');
  }
  const binary = buildGrpcGen();
  // mkdtemp makes the directory 0700; the files are 0600 on top (the key is in there).
  const dir = mkdtempSync(join(tmpdir(), 'hyokd-grpc-gen-'));
  try {
    return spawnCGenerator(binary, dir, spec);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

function spawnCGenerator(binary: string, dir: string, spec: LoadSpec): Generator {
  const file = (name: string, data: string | Buffer) => {
    const p = join(dir, name);
    writeFileSync(p, data, { mode: 0o600 });
    return p;
  };
  // The frames file: each gRPC frame behind its u32 big-endian length.
  const records = spec.frames.flatMap((f) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(f.byteLength);
    return [len, Buffer.from(f.buffer, f.byteOffset, f.byteLength)];
  });
  const t = spec.target;
  const open = spec.mode === 'open' && spec.kind !== 'stream';
  const args = [
    ['--port', t.port],
    ['--ca', file('ca.pem', t.caPem)],
    ['--cert', file('client.pem', t.certPem)],
    ['--key', file('client.key', t.keyPem)],
    ['--path', spec.path],
    ['--kind', spec.kind],
    ['--frames', file('frames.bin', Buffer.concat(records))],
    ['--threads', spec.workers],
    ['--connections', spec.connections],
    ['--concurrency', spec.concurrency],
    // As in worker.ts, streams ignore the mode: always a window of messages in flight.
    ['--mode', open ? 'open' : 'closed'],
    ...(open
      ? [
          ['--rate', spec.rate],
          ['--max-outstanding', spec.maxOutstanding],
          ['--tick-us', spec.openTickUs],
        ]
      : []),
    ['--warmup-ms', spec.warmupMs],
    ['--measure-ms', spec.measureMs],
    ['--deadline-ms', spec.deadlineMs],
    ['--capture-every', spec.captureEvery],
    ['--max-captures', spec.maxCaptures],
  ].flatMap(([k, v]) => [String(k), String(v)]);

  const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  // Writing to a generator that has died fails with EPIPE: its exit is reported by `done`.
  child.stdin.on('error', () => undefined);
  let out = '';
  let err = '';
  let onReady!: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  const exited = new Promise<void>((r) => {
    child.once('close', () => r());
    child.once('error', () => r());
  });
  const done = new Promise<WorkerResult[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`grpc_gen did not connect within ${READY_TIMEOUT_MS} ms`));
    }, READY_TIMEOUT_MS);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.startsWith('ready\n')) {
        clearTimeout(timer);
        onReady();
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-8000)));
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`grpc_gen exited with ${signal ?? code}: ${err.trim() || '(no message)'}`));
        return;
      }
      // Warnings of a run that completed (e.g. a connection lost midway) go with the log.
      if (err) process.stderr.write(err);
      try {
        resolve([fromGenOutput(out.trim().split('\n').pop() ?? '')]);
      } catch (e) {
        reject(new Error(`grpc_gen did not end with its JSON line: ${(e as Error).message}`));
      }
    });
  });
  // A failure before anyone awaits `done` must not become an unhandled rejection.
  done.catch(() => undefined);
  let killer: NodeJS.Timeout | undefined;
  return {
    ready,
    go(at) {
      // stdin stays open until release(): grpc_gen exits at its end, after its report, so
      // its CPU time can be read at the end of the window however late the timer fires.
      child.stdin.write(`go ${at}\n`);
      killer = setTimeout(
        () => child.kill('SIGKILL'),
        at - now() + spec.warmupMs + spec.measureMs + EXIT_SLACK_MS,
      );
    },
    cpuSeconds: () => procCpu(child.pid!).process,
    release() {
      child.stdin.end();
    },
    done,
    async close() {
      clearTimeout(killer);
      child.stdin.end();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function runLoad(spec: LoadSpec, serverPid: number): Promise<LoadResult> {
  const gen = generatorFromEnv() === 'node' ? nodeGenerator(spec) : cGenerator(spec);
  try {
    // A generator that fails to connect rejects `done` before it is ready: race the two.
    await Promise.race([gen.ready, gen.done.then(() => undefined)]);
    const at = now() + START_DELAY_MS;
    gen.go(at);
    const from = at + spec.warmupMs;
    const to = from + spec.measureMs;
    await sleepUntil(from);
    const s0 = procCpu(serverPid);
    const g0 = gen.cpuSeconds();
    const m0 = systemBusySeconds();
    const p0 = cpuPressureSeconds();
    const t0 = now();
    await sleepUntil(to);
    const s1 = procCpu(serverPid);
    const g1 = gen.cpuSeconds();
    const m1 = systemBusySeconds();
    const p1 = cpuPressureSeconds();
    const seconds = (now() - t0) / 1000;
    gen.release();
    const results = await gen.done;

    const histogram = createHistogram();
    const nonOk: Record<string, number> = {};
    const sum = (f: (r: WorkerResult) => number) => results.reduce((a, r) => a + f(r), 0);
    for (const r of results) {
      histogram.add(r.histogram);
      for (const [k, v] of Object.entries(r.nonOk)) nonOk[k] = (nonOk[k] ?? 0) + v;
    }
    const measured = spec.measureMs / 1000;
    const calls = sum((r) => r.calls);
    const okItems = sum((r) => r.okItems);
    const { frames: _f, target: _t, ...shown } = spec;
    void _f;
    void _t;
    return {
      spec: shown,
      seconds: measured,
      calls,
      callsPerSec: calls / measured,
      okItems,
      okItemsPerSec: okItems / measured,
      failedItems: sum((r) => r.failedItems),
      nonOk,
      transportErrors: sum((r) => r.transportErrors),
      skipped: sum((r) => r.skipped),
      abandoned: sum((r) => r.abandoned),
      histogram,
      p50Ms: histogram.count > 0 ? histogram.percentile(50) / 1000 : Number.NaN,
      p99Ms: histogram.count > 0 ? histogram.percentile(99) / 1000 : Number.NaN,
      captures: results.flatMap((r) => r.captures),
      cpu: {
        seconds,
        serverCores: (s1.process - s0.process) / seconds,
        serverMainThread: (s1.mainThread - s0.mainThread) / seconds,
        serverMainWait: (s1.mainThreadWait - s0.mainThreadWait) / seconds,
        cpuPressure: (p1 - p0) / seconds,
        generatorCores: (g1 - g0) / seconds,
        machineCores: (m1 - m0) / seconds,
      },
    };
  } finally {
    await gen.close();
  }
}
