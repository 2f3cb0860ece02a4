// One load-generator thread: node:http2 client sessions over mutual TLS, sending
// pre-encoded gRPC frames and reading back only what is needed to count outcomes: the
// grpc-status (trailers, or headers for trailers-only responses), the response length
// and, for batches and streams, the per-item status codes. Started by run.ts.
import { connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { createHistogram, performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { batchItemCodes, FrameReader, streamItemCode } from './proto.js';
import type { Capture, FromWorker, ToWorker, WorkerJob, WorkerResult } from './types.js';

const DRAIN_TIMEOUT_MS = 5000;

const job = workerData as WorkerJob;
const port = parentPort!;
const frames = job.frames.map((f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength));
// Unary and batch calls carry a deadline, as real clients' calls do (the server then
// passes each call's remaining time to the HSM step); streams run for the whole case.
const headers: Record<string, string> = {
  ':method': 'POST',
  ':path': job.path,
  'content-type': 'application/grpc',
  te: 'trailers',
  ...(job.kind !== 'stream' && job.deadlineMs > 0 ? { 'grpc-timeout': `${job.deadlineMs}m` } : {}),
};

/** Epoch-aligned milliseconds, comparable across threads. */
const now = () => performance.timeOrigin + performance.now();

const result: WorkerResult = {
  calls: 0,
  okItems: 0,
  failedItems: 0,
  nonOk: {},
  transportErrors: 0,
  skipped: 0,
  abandoned: 0,
  histogram: createHistogram(),
  captures: [] as Capture[],
};
let measureFrom = Infinity;
let stopAt = Infinity;
let outstanding = 0;
let next = job.frameOffset;
let onIdle: (() => void) | null = null;

function send(msg: FromWorker): void {
  port.postMessage(msg);
}

function openSessions(): Promise<ClientHttp2Session[]> {
  const t = job.target;
  return Promise.all(
    Array.from(
      { length: job.connections },
      () =>
        new Promise<ClientHttp2Session>((resolve, reject) => {
          const s = connect(`https://127.0.0.1:${t.port}`, {
            ca: t.caPem,
            cert: t.certPem,
            key: t.keyPem,
            // SNI takes a name, not an IP; the dev server certificate names localhost
            // (and 127.0.0.1), and the connection still goes to 127.0.0.1.
            servername: 'localhost',
          });
          s.once('connect', () => resolve(s));
          s.once('error', reject);
          // Errors after connect are counted per stream; keep the process alive.
          s.on('error', () => undefined);
        }),
    ),
  );
}

function inWindow(t: number): boolean {
  return t >= measureFrom && t < stopAt;
}

/** Called after result.calls counted an in-window completion: the 1st, then every N-th. */
function wantCapture(): boolean {
  return result.captures.length < job.maxCaptures && result.calls % job.captureEvery === 1 % job.captureEvery;
}

function settled(): void {
  outstanding--;
  if (outstanding === 0 && onIdle) onIdle();
}

/**
 * One call on its own HTTP/2 stream. `startedAt` is when the call was meant to start
 * (open loop: its slot in the schedule, so queueing in the generator counts as latency).
 */
function call(session: ClientHttp2Session, startedAt: number, then?: () => void): void {
  const idx = next++ % frames.length;
  outstanding++;
  let status: string | undefined;
  let length = 0;
  // Holding the chunk references costs nothing; they are concatenated only when read.
  const chunks: Buffer[] = [];
  let failed = false;
  let req: ClientHttp2Stream;
  try {
    req = session.request(headers);
  } catch {
    result.transportErrors++;
    settled();
    return;
  }
  req.on('response', (h) => {
    const s = h['grpc-status'];
    if (s !== undefined) status = String(s);
  });
  req.on('trailers', (t) => {
    status = String(t['grpc-status']);
  });
  req.on('data', (c: Buffer) => {
    length += c.length;
    chunks.push(c);
  });
  req.on('error', () => {
    failed = true;
  });
  req.on('close', () => {
    const t = now();
    if (inWindow(t)) {
      result.calls++;
      if (failed || status === undefined) result.transportErrors++;
      else if (status !== '0') result.nonOk[status] = (result.nonOk[status] ?? 0) + 1;
      else if (length < 5) result.transportErrors++;
      else if (job.kind === 'batch') {
        try {
          const msg = Buffer.concat(chunks).subarray(5);
          const c = batchItemCodes(msg);
          result.okItems += c.ok;
          result.failedItems += c.failed;
          if (wantCapture()) result.captures.push({ frame: idx, message: new Uint8Array(msg) });
        } catch {
          result.transportErrors++;
        }
      } else {
        result.okItems++;
        if (wantCapture()) {
          result.captures.push({ frame: idx, message: new Uint8Array(Buffer.concat(chunks).subarray(5)) });
        }
      }
      result.histogram.record(Math.max(1, Math.round((t - startedAt) * 1000)));
    }
    settled();
    if (then) then();
  });
  req.end(frames[idx]);
}

function closedLoop(sessions: ClientHttp2Session[]): void {
  for (const s of sessions) {
    const again = () => {
      if (now() < stopAt) call(s, now(), again);
    };
    for (let i = 0; i < job.concurrency; i++) again();
  }
}

function openLoop(sessions: ClientHttp2Session[], start: number): void {
  const interval = 1000 / job.rate;
  let k = 0;
  const tick = () => {
    const t = now();
    while (start + k * interval <= t && start + k * interval < stopAt) {
      const slot = start + k * interval;
      const s = sessions[k % sessions.length];
      k++;
      if (outstanding >= job.maxOutstanding) {
        if (inWindow(slot)) result.skipped++;
        continue;
      }
      call(s, slot);
    }
    if (t < stopAt) setTimeout(tick, 1);
  };
  tick();
}

/** Long-lived bidi streams, each keeping `concurrency` messages in flight. */
function streams(sessions: ClientHttp2Session[]): void {
  for (const s of sessions) {
    for (let i = 0; i < job.streamsPerConnection; i++) {
      outstanding++;
      const req = s.request(headers);
      const reader = new FrameReader();
      let inFlight = 0;
      let ended = false;
      let status: string | undefined;
      const push = () => {
        inFlight++;
        req.write(frames[next++ % frames.length]);
      };
      const maybeEnd = () => {
        if (!ended && inFlight === 0 && now() >= stopAt) {
          ended = true;
          req.end();
        }
      };
      req.on('response', (h) => {
        const st = h['grpc-status'];
        if (st !== undefined) status = String(st);
      });
      req.on('trailers', (t) => {
        status = String(t['grpc-status']);
      });
      req.on('data', (c: Buffer) => {
        let msgs: Buffer[];
        try {
          msgs = reader.push(c);
        } catch {
          result.transportErrors++;
          req.close();
          return;
        }
        const t = now();
        for (const m of msgs) {
          inFlight--;
          if (inWindow(t)) {
            result.calls++;
            let code: number;
            try {
              code = streamItemCode(m);
            } catch {
              result.transportErrors++;
              continue;
            }
            if (code === 0) result.okItems++;
            else result.failedItems++;
            if (wantCapture()) result.captures.push({ frame: -1, message: new Uint8Array(m) });
          }
          if (t < stopAt) push();
        }
        maybeEnd();
      });
      req.on('error', () => {
        result.transportErrors++;
      });
      // A stream whose last answers came before stopAt still has to be ended.
      const endTimer = setInterval(() => {
        maybeEnd();
        if (ended) clearInterval(endTimer);
      }, 20);
      req.on('close', () => {
        clearInterval(endTimer);
        if (status !== undefined && status !== '0') result.nonOk[status] = (result.nonOk[status] ?? 0) + 1;
        if (inFlight > 0) result.abandoned += inFlight;
        settled();
      });
      for (let k = 0; k < job.concurrency; k++) push();
    }
  }
}

async function main(): Promise<void> {
  const sessions = await openSessions();
  const go = await new Promise<number>((resolve) => {
    port.once('message', (m: ToWorker) => resolve(m.at));
    send({ type: 'ready' });
  });
  measureFrom = go + job.warmupMs;
  stopAt = measureFrom + job.measureMs;
  await new Promise((r) => setTimeout(r, Math.max(0, go - now())));
  if (job.kind === 'stream') streams(sessions);
  else if (job.mode === 'open') openLoop(sessions, go);
  else closedLoop(sessions);
  await new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, stopAt - now())));
  await new Promise<void>((resolve) => {
    if (outstanding === 0) return resolve();
    const timer = setTimeout(() => {
      result.abandoned += outstanding;
      resolve();
    }, DRAIN_TIMEOUT_MS);
    onIdle = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  for (const s of sessions) s.destroy();
  send({ type: 'done', result });
}

main().catch((e: unknown) => send({ type: 'failed', error: (e as Error).message }));
