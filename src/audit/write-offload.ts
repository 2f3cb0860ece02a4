// The audit writer's helper thread: chain and write batches of caller records off the
// event loop.
//
// Why: on the data plane the event loop is the daemon's bottleneck, and a durable write
// (plus hashing every record) is work it need not do. The loop serializes each record at
// append (the pipeline's records reuse cached JSON of their frozen parts and repeated row
// members); a batch's bodies are handed over as one string (packBatch). The thread
// (native/audit_write.cc) chains the records exactly as chainLine does and writes the
// batch to the descriptor the writer opened, answering with the new head: the bytes on
// disk do not depend on which side built them.
//
// The thread is native, not a worker_threads Worker. With a Worker every batch crossed
// two MessagePorts (a structured clone and an event dispatched on each side, plus a V8
// isolate of its own for a few string joins and SHA-256s); in the daemon under unary load
// that cost the loop about 4.6 µs per call in postMessage alone (bench/RESULTS.md, eighth
// pass). A hand-over is now one Node-API call that copies the packed string and wakes
// the thread; the answers of all the batches finished meanwhile come back in one call.
//
// Records with item rows once went over as events, serialized on the helper: that saved
// the loop time in the writer alone, but in the daemon under BatchUnwrap load it cost
// more in all, so every record is serialized at append.
//
// A job says where its batch goes: after a given record (its hash) at a given offset, or
// right after the previous job's batch ("after-previous"). The second lets the writer
// hand over the next batch while the thread is still writing this one, instead of
// waiting for its answer (a pipeline): the thread keeps the end of the chain it wrote and
// where it ended. A follow-on job whose predecessor was not written (an error, a batch
// over its limit, a cancelled job) is not written either: it is answered `cancelled`.
// `cancel()` makes every job handed over before it that the thread has not yet begun
// writing answer `cancelled` (a counter the thread reads before each write): once the
// writer has failed a batch closed, nothing queued behind it reaches the file.
//
// The writer keeps everything else: which file, rotation, checkpoints (signed by the
// HSM on the loop's side), the write timeout, failure and recovery, the reserved space.
// It hands over only batches made of caller records, and only while a file is open;
// anything else it builds and writes itself. A job says how many bytes it may take
// (`limit`: where a zero fill of reserved space begins); a batch that would take more is
// answered `over` and not written. An I/O error comes back as an answer (the errno name,
// where the batch was written and the bytes written before it) and the batch fails closed
// as any failed write does. A job the thread cannot parse (a bug here) ends the thread:
// its jobs fail (the writer fails them closed: it cannot know what reached the file, so
// the resume marker will say) and the helper stays unusable: the writer logs a warning
// and carries on without it. So does a native addon that cannot be loaded.

import type { BodySegments } from './canonical.js';
import { errorKind } from './errors.js';
import { packBatch } from './chain-batch.js';
import { addon, AUDIT_ANSWER, type RawAuditWriteThread } from '../hsm/native.js';

/**
 * Where a batch goes: after the record whose hash is `prev`, at file offset `position`;
 * or right after the previous job's batch, in the same file (that job must be written).
 */
export type WriteAt = { prev: string; position: number } | 'after-previous';

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

export class AuditWriteOffload {
  readonly #thread: RawAuditWriteThread | null;
  readonly #waiting = new Map<number, Waiting>();
  readonly #onFailure: ((reason: string) => void) | undefined;
  #nextId = 1;
  #usable = false;

  /** `onFailure`: called once if the thread fails or cannot start (for the operational log). */
  constructor(onFailure?: (reason: string) => void) {
    this.#onFailure = onFailure;
    let thread: RawAuditWriteThread | null = null;
    try {
      thread = new (addon().AuditWriteThread)((flat) => this.#answers(flat));
      this.#usable = true;
    } catch {
      onFailure?.('error');
    }
    this.#thread = thread;
  }

  /** Resolves true if the thread takes jobs, false if it failed to start. */
  ready(): Promise<boolean> {
    return Promise.resolve(this.#thread !== null);
  }

  /** Whether the writer may hand it a batch now (started, not failed, not closed). */
  get usable(): boolean {
    return this.#usable;
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
    if (!this.#usable || !this.#thread)
      return Promise.reject(failure('WORKER', 'audit write helper unavailable'));
    const id = this.#nextId++;
    const prev = at === 'after-previous' ? null : at.prev;
    const position = at === 'after-previous' ? 0 : at.position;
    this.#thread.write(id, fd, packBatch(bodies), seq, ts, prev, position, limit);
    return new Promise<WriteOutcome>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
    });
  }

  /**
   * Settles now the jobs whose answers are ready, rather than when the event loop reaches
   * the thread's notification (under load about a millisecond later: bench/RESULTS.md,
   * eighth pass). Cheap when nothing is ready; the writer calls it at each append while
   * jobs are out.
   */
  poll(): void {
    if (this.#usable && this.#waiting.size > 0) this.#thread?.poll();
  }

  /** Every job handed over so far that the thread has not begun writing is answered CANCELLED. */
  cancel(): void {
    this.#thread?.cancel();
  }

  /**
   * Test hook, a hung disk: while on, the thread stops just before its next write reaches
   * the file (chained, past the cancel check) and carries on when it is turned off.
   */
  hold(on: boolean): void {
    this.#thread?._testHold(on);
  }

  /** Whether a write waits at the test hold now. */
  get holding(): boolean {
    return this.#thread?._testHolding() ?? false;
  }

  /** Stop the thread after the write it is on; jobs still waiting fail. */
  close(): Promise<void> {
    this.#stop(failure('WORKER', 'audit write helper closed'));
    return Promise.resolve();
  }

  /** The thread's answers, five entries each (native/audit_write.cc). */
  #answers(flat: Array<number | string>): void {
    for (let i = 0; i + 4 < flat.length; i += 5) {
      const id = flat[i] as number;
      const kind = flat[i + 1] as number;
      const text = flat[i + 2] as string;
      const bytes = flat[i + 3] as number;
      const position = flat[i + 4] as number;
      if (kind === AUDIT_ANSWER.dead) {
        // A job the thread could not parse: it has stopped, and every job with it fails.
        this.#onFailure?.('error');
        this.#stop(failure('WORKER', 'audit write helper stopped'));
        return;
      }
      const w = this.#waiting.get(id);
      if (!w) continue;
      this.#waiting.delete(id);
      if (kind === AUDIT_ANSWER.written) w.resolve({ kind: 'written', hash: text, bytes, position });
      else if (kind === AUDIT_ANSWER.over) w.resolve({ kind: 'over', bytes });
      else if (kind === AUDIT_ANSWER.cancelled) w.reject(failure('CANCELLED', 'audit write cancelled'));
      else {
        const code = errorKind({ code: text });
        w.reject(failure(code, `audit write failed (${code})`, { written: bytes, position }));
      }
    }
  }

  #stop(err: Error): void {
    if (!this.#usable) return;
    this.#usable = false;
    this.#thread?.close();
    for (const w of this.#waiting.values()) w.reject(err);
    this.#waiting.clear();
  }
}
