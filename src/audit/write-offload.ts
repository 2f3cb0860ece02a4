// The audit writer's helper thread: chain and write batches of caller records off the
// event loop.
//
// Why: on the data plane the event loop is the daemon's bottleneck, and a durable write
// (plus hashing every record) is work it need not do. The loop serializes each record at
// append (the pipeline's records reuse cached JSON of their frozen parts and repeated row
// members); a batch's bodies are posted as one string (packBatch). The worker
// (write-worker.ts) chains the records with the same chainLine and writes the batch to
// the descriptor the writer opened, answering with the new head: the bytes on disk do
// not depend on which thread built them.
//
// Records with item rows once went over as events, serialized here: that saved the loop
// time in the writer alone, but in the daemon under BatchUnwrap load it cost more in all
// (the clone on the loop, its decoding and the serialization here: 3-4 µs of CPU per DEK
// more, 4-13% fewer DEKs/s in alternating runs), so every record is serialized at append.
//
// A job says where its batch goes: after a given record (its hash) at a given offset, or
// right after the previous job's batch ("after-previous"). The second lets the writer
// hand over the next batch while the worker is still writing this one, instead of
// waiting for its answer (a pipeline): the worker keeps the end of the chain it wrote and
// where it ended. A follow-on job whose predecessor was not written (an error, a batch
// over its limit, a cancelled job) is not written either: it is answered `cancelled`.
// `cancel()` makes every job posted before it that the worker has not yet begun writing
// answer `cancelled` (a counter shared with the worker, read before each write): once the
// writer has failed a batch closed, nothing queued behind it reaches the file.
//
// The writer keeps everything else: which file, rotation, checkpoints (signed by the
// HSM on the loop's side), the write timeout, failure and recovery, the reserved space.
// It hands over only batches made of caller records, only while a file is open, and
// only once the worker has said it is ready; anything else it builds and writes itself.
// A job says how many bytes it may take (`limit`: where a zero fill of reserved space
// begins); a batch that would take more is answered `over` and not written. An I/O error
// comes back as an answer (`error`: the errno name, where the batch was written and the
// bytes written before it) and the batch fails closed as any failed write does. If the
// thread dies, its jobs fail (the writer fails them closed: it cannot know what reached
// the file, so the resume marker will say) and the helper stays unusable: the writer logs
// a warning and carries on without it.

import { Worker } from 'node:worker_threads';
import type { BodySegments } from './canonical.js';
import { packBatch } from './chain-batch.js';

/**
 * Where a batch goes: after the record whose hash is `prev`, at file offset `position`;
 * or right after the previous job's batch, in the same file (that job must be written).
 */
export type WriteAt = { prev: string; position: number } | 'after-previous';

export interface WriteJob {
  id: number;
  fd: number;
  /** packBatch of the records' bodies. */
  packed: string;
  /** The first record's seq and the batch's timestamp. */
  seq: number;
  ts: string;
  at: WriteAt;
  /** Most bytes the batch may take where it goes, or -1 for no limit. */
  limit: number;
  /** The cancel count when the job was posted: a job posted before a cancel() is not written. */
  epoch: number;
}

export type WriteAnswer =
  | { id: number; hash: string; bytes: number; position: number }
  | { id: number; over: number }
  | { id: number; error: string; written: number; position: number }
  | { id: number; cancelled: true };

/** What a job came to: written (with the new head, at `position`), or not written and why. */
export type WriteOutcome =
  | { kind: 'written'; hash: string; bytes: number; position: number }
  /** Would take `bytes`, more than the job's limit: nothing written. */
  | { kind: 'over'; bytes: number };

interface Waiting {
  resolve: (r: WriteOutcome) => void;
  reject: (err: Error) => void;
}

function failure(code: string, message: string, where?: { written: number; position: number }): Error {
  return Object.assign(new Error(message), { code }, where ?? {});
}

/** The worker module next to this one (.ts when this file runs from source, as under tap). */
function workerUrl(): URL {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./write-worker${ext}`, import.meta.url);
}

export class AuditWriteOffload {
  readonly #worker: Worker;
  /** [0]: how many times cancel() was called; the worker reads it before each write. */
  readonly #epoch = new Int32Array(new SharedArrayBuffer(4));
  readonly #waiting = new Map<number, Waiting>();
  #nextId = 1;
  #ready = false;
  #dead = false;
  #closing = false;
  readonly #readyPromise: Promise<boolean>;

  /** `onFailure`: called once if the thread fails or exits while not being closed (for the operational log). */
  constructor(onFailure?: (reason: string) => void) {
    this.#worker = new Worker(workerUrl(), { workerData: { epoch: this.#epoch } });
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
      if ('error' in m)
        w.reject(
          failure(m.error, `audit write failed (${m.error})`, { written: m.written, position: m.position }),
        );
      else if ('cancelled' in m) w.reject(failure('CANCELLED', 'audit write cancelled'));
      else if ('over' in m) w.resolve({ kind: 'over', bytes: m.over });
      else w.resolve({ kind: 'written', hash: m.hash, bytes: m.bytes, position: m.position });
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
   * Chain `bodies` as records seq, seq+1, … (all stamped `ts`) after the point `at`
   * names, then write them to `fd` there unless they take more than `limit` bytes (-1:
   * no limit); the caller keeps `fd` open until this settles. Resolves with the outcome
   * once the write has returned; rejects with the errno name as `code` (with `position`
   * and `written`, the bytes that reached the file before the error), or CANCELLED.
   */
  write(
    fd: number,
    bodies: readonly BodySegments[],
    seq: number,
    ts: string,
    at: WriteAt,
    limit = -1,
  ): Promise<WriteOutcome> {
    if (!this.usable) return Promise.reject(failure('WORKER', 'audit write worker unavailable'));
    const id = this.#nextId++;
    const epoch = Atomics.load(this.#epoch, 0);
    const job: WriteJob = { id, fd, packed: packBatch(bodies), seq, ts, at, limit, epoch };
    this.#worker.postMessage(job);
    return new Promise<WriteOutcome>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
    });
  }

  /** Every job posted so far that the worker has not begun writing is answered CANCELLED. */
  cancel(): void {
    Atomics.add(this.#epoch, 0, 1);
  }

  /** Stop the thread (jobs still waiting fail). */
  async close(): Promise<void> {
    this.#closing = true;
    this.#ready = false;
    await this.#worker.terminate();
  }
}
