// The audit writer's helper thread: chain and write batches of caller records off the
// event loop.
//
// Why: on the data plane the event loop is the daemon's bottleneck, and per record the
// chain hash, the line, the batch's UTF-8 buffer and the garbage they leave cost it
// several microseconds, plus a thread-pool round trip per batch for the write. With
// this helper the loop only serializes each body (as before) and posts one string per
// batch; the worker (write-worker.ts) chains, encodes and writes with the same code the
// writer uses itself, to the descriptor the writer opened, and answers with the new head.
//
// The writer keeps everything else: which file, rotation, checkpoints (signed by the
// HSM on the loop's side), the write timeout, failure and recovery. It hands over only
// batches made of caller records, only while a file is open, and only once the worker
// has said it is ready; anything else it builds and writes itself. An I/O error comes
// back as an answer (`error`: the errno name) and the batch fails closed as any failed
// write does. If the thread dies, its jobs fail (the writer fails them closed: it cannot
// know what reached the file, so the resume marker will say) and the helper stays
// unusable: the writer logs a warning and carries on without it.

import { Worker } from 'node:worker_threads';
import { packBatch } from './chain-batch.js';
import type { BodySegments } from './canonical.js';

export interface WriteJob {
  id: number;
  fd: number;
  /** packBatch of the records' bodies. */
  packed: string;
  /** The first record's seq, the batch's timestamp and the previous record's hash. */
  seq: number;
  ts: string;
  prev: string;
  /** File offset the batch is written at. */
  position: number;
}

export type WriteAnswer = { id: number; hash: string; bytes: number } | { id: number; error: string };

export interface WriteResult {
  /** The last record's hash. */
  hash: string;
  bytes: number;
}

interface Waiting {
  resolve: (r: WriteResult) => void;
  reject: (err: Error) => void;
}

function failure(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** The worker module next to this one (.ts when this file runs from source, as under tap). */
function workerUrl(): URL {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./write-worker${ext}`, import.meta.url);
}

export class AuditWriteOffload {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, Waiting>();
  #nextId = 1;
  #ready = false;
  #dead = false;
  #closing = false;
  readonly #readyPromise: Promise<boolean>;

  /** `onFailure`: called once if the thread fails or exits while not being closed (for the operational log). */
  constructor(onFailure?: (reason: string) => void) {
    this.#worker = new Worker(workerUrl());
    // Never keeps the process alive: the writer's own work does.
    this.#worker.unref();
    let settle!: (ok: boolean) => void;
    this.#readyPromise = new Promise((resolve) => (settle = resolve));
    this.#worker.on('message', (m: WriteAnswer | { ready: true }) => {
      if ('ready' in m) {
        this.#ready = !this.#dead && !this.#closing;
        settle(this.#ready);
        return;
      }
      const w = this.#waiting.get(m.id);
      if (!w) return;
      this.#waiting.delete(m.id);
      if ('error' in m) w.reject(failure(m.error, `audit write failed (${m.error})`));
      else w.resolve({ hash: m.hash, bytes: m.bytes });
    });
    const die = (why: unknown): void => {
      if (this.#dead) return;
      this.#dead = true;
      if (!this.#closing) {
        onFailure?.(why instanceof Error ? 'error' : `exit ${String(why)}`);
      }
      this.#ready = false;
      settle(false);
      const err = failure('WORKER', 'audit write worker stopped');
      for (const w of this.#waiting.values()) w.reject(err);
      this.#waiting.clear();
    };
    this.#worker.on('error', die);
    this.#worker.on('exit', die);
  }

  /** Resolves true once the worker takes jobs, false if it failed first. */
  ready(): Promise<boolean> {
    return this.#readyPromise;
  }

  /** Whether the writer may hand it a batch now (ready, not dead, not closing). */
  get usable(): boolean {
    return this.#ready;
  }

  /** Jobs sent and not answered yet. */
  get inflight(): number {
    return this.#waiting.size;
  }

  /**
   * Chain `bodies` as records seq, seq+1, … after `prev` (all stamped `ts`) and write
   * them to `fd` at offset `position`; the caller keeps `fd` open until this settles.
   * Resolves with the new head's hash once the write has returned; rejects with the
   * errno name as `code`.
   */
  write(
    fd: number,
    bodies: readonly BodySegments[],
    seq: number,
    ts: string,
    prev: string,
    position: number,
  ): Promise<WriteResult> {
    if (!this.usable) return Promise.reject(failure('WORKER', 'audit write worker unavailable'));
    const id = this.#nextId++;
    const job: WriteJob = { id, fd, packed: packBatch(bodies), seq, ts, prev, position };
    return new Promise<WriteResult>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage(job);
    });
  }

  /** Stop the thread (jobs still waiting fail). */
  async close(): Promise<void> {
    this.#closing = true;
    this.#ready = false;
    await this.#worker.terminate();
  }
}
