// The audit writer's helper thread: serialize, chain and write batches of caller records
// off the event loop.
//
// Why: on the data plane the event loop is the daemon's bottleneck. The loop serializes
// small records itself (the pipeline's unary records reuse cached JSON of their frozen
// parts, and cost more to clone than to serialize) and posts each as one string; a
// record with item rows (BatchUnwrap: 64 rows, ~7 KB) goes as the event itself, which the
// structured clone carries for a fraction of what serializing it costs the loop (writer
// alone: 83-98 µs of event-loop CPU per such record serialized on the loop, 15-24 µs
// handed over). The worker (write-worker.ts) serializes those with the same
// eventSegments, chains every record with the same chainLine and writes the batch to the
// descriptor the writer opened, at the offset it is given, answering with the new head:
// the bytes on disk do not depend on which thread built them.
//
// The writer keeps everything else: which file, rotation, checkpoints (signed by the
// HSM on the loop's side), the write timeout, failure and recovery, the reserved space.
// It hands over only batches made of caller records, only while a file is open, and
// only once the worker has said it is ready; anything else it builds and writes itself.
// A job says how many bytes it may take (`limit`: where a zero fill of reserved space
// begins); a batch that would take more is answered `over` and not written. An event the
// structured clone cannot carry (a function, a throwing getter) or the worker cannot
// serialize is answered `unserializable`, nothing written: the writer builds that batch
// on the loop, where a bad event is refused alone. An I/O error comes back as an answer
// (`error`: the errno name, and the bytes written before it) and the batch fails closed
// as any failed write does. If the thread dies, its jobs fail (the writer fails them
// closed: it cannot know what reached the file, so the resume marker will say) and the
// helper stays unusable: the writer logs a warning and carries on without it.

import { Worker } from 'node:worker_threads';

export interface WriteJob {
  id: number;
  fd: number;
  /** Each record: its body serialized by the loop (packBody), or the caller's event to serialize there. */
  records: readonly (string | object)[];
  /** The first record's seq, the batch's timestamp and the previous record's hash. */
  seq: number;
  ts: string;
  prev: string;
  /** File offset the batch is written at. */
  position: number;
  /** Most bytes the batch may take at `position`, or -1 for no limit. */
  limit: number;
}

export type WriteAnswer =
  | { id: number; hash: string; bytes: number }
  | { id: number; over: number }
  | { id: number; unserializable: true }
  | { id: number; error: string; written: number };

/** What a job came to: written (with the new head), or not written and why. */
export type WriteOutcome =
  | { kind: 'written'; hash: string; bytes: number }
  /** Would take `bytes`, more than the job's limit: nothing written. */
  | { kind: 'over'; bytes: number }
  /** An event could not be carried or serialized by the worker: nothing written. */
  | { kind: 'unserializable' };

interface Waiting {
  resolve: (r: WriteOutcome) => void;
  reject: (err: Error) => void;
}

function failure(code: string, message: string, written?: number): Error {
  return Object.assign(new Error(message), { code }, written !== undefined ? { written } : {});
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
      if ('error' in m) w.reject(failure(m.error, `audit write failed (${m.error})`, m.written));
      else if ('over' in m) w.resolve({ kind: 'over', bytes: m.over });
      else if ('unserializable' in m) w.resolve({ kind: 'unserializable' });
      else w.resolve({ kind: 'written', hash: m.hash, bytes: m.bytes });
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
   * Serialize what `records` still holds as events, chain them as records seq, seq+1, …
   * after `prev` (all stamped
   * `ts`), then write them to `fd` at offset `position` unless they take more than
   * `limit` bytes (-1: no limit); the caller keeps `fd` open until this settles.
   * Resolves with the outcome once the write has returned; rejects with the errno name
   * as `code` (and `written`, the bytes that reached the file before the error).
   */
  write(
    fd: number,
    records: readonly (string | object)[],
    seq: number,
    ts: string,
    prev: string,
    position: number,
    limit = -1,
  ): Promise<WriteOutcome> {
    if (!this.usable) return Promise.reject(failure('WORKER', 'audit write worker unavailable'));
    const id = this.#nextId++;
    const job: WriteJob = { id, fd, records, seq, ts, prev, position, limit };
    try {
      // Throws DataCloneError for what the structured clone cannot carry, or whatever a
      // getter throws: nothing was sent.
      this.#worker.postMessage(job);
    } catch {
      return Promise.resolve({ kind: 'unserializable' });
    }
    return new Promise<WriteOutcome>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
    });
  }

  /** Stop the thread (jobs still waiting fail). */
  async close(): Promise<void> {
    this.#closing = true;
    this.#ready = false;
    await this.#worker.terminate();
  }
}
