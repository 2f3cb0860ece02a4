// The load generator's coordinator: starts worker threads (worker.ts), lets them connect,
// starts them together, and merges what they report. Around the measured window it reads
// the CPU time of the server process (/proc) and of this process (all generator threads),
// and the machine's busy time, so each figure says which side was the bottleneck.
import { createHistogram, performance, type RecordableHistogram } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { systemBusySeconds } from '../lib/procstat.js';
import { cpuPressureSeconds, procCpu } from './proc-cpu.js';
import type { Capture, FromWorker, WorkerJob, WorkerResult } from './types.js';

export interface LoadSpec extends Omit<WorkerJob, 'frameOffset' | 'rate'> {
  workers: number;
  /** open: total calls per second across all workers. */
  rate: number;
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

export async function runLoad(spec: LoadSpec, serverPid: number): Promise<LoadResult> {
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
  try {
    // A worker that fails to connect rejects `done` before it is ready: race the two.
    await Promise.race([Promise.all(ready), Promise.all(done).then(() => undefined)]);
    const at = now() + START_DELAY_MS;
    for (const w of workers) w.postMessage({ type: 'go', at });
    const from = at + spec.warmupMs;
    const to = from + spec.measureMs;
    await sleepUntil(from);
    const s0 = procCpu(serverPid);
    const g0 = process.cpuUsage();
    const m0 = systemBusySeconds();
    const p0 = cpuPressureSeconds();
    const t0 = now();
    await sleepUntil(to);
    const s1 = procCpu(serverPid);
    const g1 = process.cpuUsage(g0);
    const m1 = systemBusySeconds();
    const p1 = cpuPressureSeconds();
    const seconds = (now() - t0) / 1000;
    const results = await Promise.all(done);

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
        generatorCores: (g1.user + g1.system) / 1e6 / seconds,
        machineCores: (m1 - m0) / seconds,
      },
    };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
