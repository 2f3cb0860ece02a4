// The audit writer: hash-chained, fsync'd, fail-closed.
//
// Every record is one line of canonical JSON carrying `seq` (monotonic across files and
// restarts), `ts`, `prev` (the previous record's hash) and `hash` (SHA-256 over the
// record without `hash`). `append` resolves only after the record's line is durable:
// written to a descriptor opened O_DSYNC (the default file system), or written and
// fsync'd. With the default file system, batches of callers' records are chained and
// written by a helper thread (write-offload.ts) with the same chainLine, the next one
// handed over while the helper writes the one before ("the pipeline" below); the writer
// keeps the file, the head, checkpoints, the timeout, failure and recovery. Records that
// arrive while a batch is being written go out together in the next batch (group
// commit), so one durable write covers many requests under load; an idle writer writes
// at once (`groupCommitMaxDelayMs` 0). Batches are written at explicit offsets into
// zero-filled space kept ahead of the records (`reserveBytes`, "reserved space" below).
//
// Fail closed. A write or fsync that errors, or does not finish within `writeTimeoutMs`
// (a real timer around open+write+fsync), rejects every record of the batch with
// AUDIT_UNAVAILABLE, marks the writer unhealthy and rejects new appends at once. The
// file being written is abandoned (never written again; only its unused reserved space,
// past the furthest byte the failed write may have reached, is cut off): bytes that may
// have reached it stay as evidence. A probe then retries every `probeIntervalMs`; once the hung call has
// settled and the directory can be read, it finds the end of the chain on disk (the last
// complete record, and any partial line after it), opens a new file and writes a
// `resume` marker that names that point, the partial line (by offset, length and
// digest) and the last record this writer had acknowledged. Restarts do the same with a
// `start` marker. So the chain never forks, a gap is always explicit, and a verifier can
// tell a declared partial line from a truncation.
//
// Checkpoints: at start, at every rotation, on stop, every `checkpointEveryRecords`
// records and every `checkpointEveryMs`, a `checkpoint` record carries an ECDSA P-256
// signature (AuditSigner) over the head it follows. The signer's public key is in the
// chain as a `key` record, written at every start and on key rotation (the old key
// signs a checkpoint over the new key's record before the new key takes over).
//
// Why pino is not the audit sink: the chain hashes exact bytes of a canonical form we
// control, while pino adds its own fields and order; and pino's destinations either
// buffer asynchronously (no per-record durability acknowledgement) or write
// synchronously on the event loop without fsync. Neither gives "resolve after fsync,
// group commit, bounded by a timer, reject on failure". So the audit files are written
// here with raw descriptors, and pino (any logger with info/warn/error(obj, msg), such
// as a pino.Logger) is the operational mirror: health changes and every checkpoint
// (head seq, hash and signature) are logged there. Those lines leave the box with the
// operational stream and serve as an external anchor: they reveal a rewrite or a
// truncation of the newest records, which a chain on one disk cannot prove alone.
// Record contents are never mirrored: the two streams stay apart.
//
// Limits, on purpose: one writer per directory (the daemon must hold its own lock on
// its home); rotation and count checkpoints fall between batches; a checkpoint that
// cannot be signed is skipped and counted (records keep flowing; the HSM being down
// stops the data plane anyway), except during key rotation, which is refused; if
// acknowledged records vanish from disk during an outage the writer stays unavailable
// (HEAD_REGRESSED) instead of continuing over the loss.

import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { bodySegments, chainLine, GENESIS_PREV, type BodySegments } from './canonical.js';
import { AuditCodes, AuditError, auditUnavailable, errorKind } from './errors.js';
import { auditFileName, findDiskHead } from './files.js';
import { nodeAuditFs, type AuditFs } from './audit-fs.js';
import { AuditWriteOffload, type WriteAt, type WriteOutcome } from './write-offload.js';
import {
  eventSegments,
  sanitizeValue,
  type AuditEvent,
  type AuditFields,
  type ChainPoint,
} from './record.js';
import { CHECKPOINT_ALG, checkpointDigest, type AuditSigner } from './signer.js';

/** Structural subset of a pino logger. */
export interface AuditOpLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface AuditWriterOptions {
  dir: string;
  signer: AuditSigner;
  /** Rotate when the current file reaches this size (checked between batches, so a file may exceed it by the batches with the write helper, offloadDepth at most). Default 64 MiB. */
  maxFileBytes?: number;
  /** Rotate when the current file is this old. Default 24 h. */
  maxFileAgeMs?: number;
  /** Checkpoint at the first batch boundary after this many records. Default 10000. */
  checkpointEveryRecords?: number;
  /** Checkpoint at least this often while records arrive. Default 60 s. */
  checkpointEveryMs?: number;
  /** How long the first record of an idle writer waits for company. Default 0 (same tick only). */
  groupCommitMaxDelayMs?: number;
  /** Most records in one durable write. Default 4096. */
  groupCommitMaxRecords?: number;
  /**
   * Zero-filled space kept ahead of the records, in bytes (0: plain appends). A durable
   * write into blocks the file already has costs the file system no journal commit; an
   * append does (the size and the new blocks). Default 4 MiB, filled 1 MiB at a time
   * off the write path; trimmed at rotation and stop. Needs `fs.truncate`.
   */
  reserveBytes?: number;
  /** Bound on open + durable write of one batch (for a batch behind others with the helper, counted from when the one before it is answered). Default 2000 ms. */
  writeTimeoutMs?: number;
  /** Retry interval while unhealthy. Default 1000 ms. */
  probeIntervalMs?: number;
  /** Injected file system (tests). Default: node:fs on descriptors. */
  fs?: AuditFs;
  /**
   * Chain and write batches of caller records on a helper thread (write-offload.ts).
   * Default: on with the default file system, off with an injected one (whose calls
   * must run on the event loop). Or the helper to use (tests, to reach its hold hook);
   * the writer closes it.
   */
  offload?: boolean | AuditWriteOffload;
  /**
   * Batches handed to the helper thread and not yet answered, at most (the next is handed
   * over while the helper writes the one before). Default 2; 1 waits for each answer.
   */
  offloadDepth?: number;
  logger?: AuditOpLogger;
  /** Called on every health change (also emitted as 'health'). */
  onHealthChange?: (healthy: boolean, errorKind: string | null) => void;
  /** Called after every durable batch (also emitted as 'batch'): for latency and batch-size metrics. */
  onBatch?: (info: { records: number; latencyMs: number }) => void;
  /** Extra fields for the start marker (daemon version, config digest). */
  startInfo?: AuditFields;
  now?: () => Date;
}

export interface AuditStats {
  healthy: boolean;
  /** Durable records written by this writer, its own markers included. */
  records: number;
  batches: number;
  /** Durable flushes: O_DSYNC writes, or fsyncs when the file system needs them. */
  fsyncs: number;
  lastBatchSize: number;
  maxBatchSize: number;
  lastWriteLatencyMs: number;
  maxWriteLatencyMs: number;
  totalWriteLatencyMs: number;
  /** Batches that failed (write error or timeout). */
  failures: number;
  /** Appends refused, whether in a failed batch or while unhealthy. */
  rejected: number;
  lastErrorKind: string | null;
  lastErrorAt: string | null;
  checkpoints: number;
  checkpointFailures: number;
  rotations: number;
  /** Batches the helper thread chained and wrote (the rest the writer built itself). */
  offloadedBatches: number;
  /** Of those, batches handed over while the one before was still with the helper (offloadDepth > 1). */
  pipelinedBatches: number;
  recoveries: number;
  pending: number;
  /** Reserved bytes ahead of the records in the current file (reserveBytes; 0 until a fill has finished). */
  reservedBytes: number;
  file: string | null;
  head: { seq: number; hash: string } | null;
}

/** A caller's record: its body, serialized at append. */
type CallerEntry = { seg: BodySegments; caller: true };
/** A record to chain: a caller's, one of the writer's own, or a checkpoint. */
type Entry = CallerEntry | { body: Record<string, unknown> } | { checkpoint: AuditSigner; reason: string };

/** An appended record waiting for its batch: itself the batch's entry, so nothing is copied per record. */
interface Pending extends CallerEntry {
  resolve: () => void;
  reject: (err: Error) => void;
}

/** A batch handed to the helper thread behind the ones still being written (the pipeline). */
interface Job {
  batch: Pending[];
  /** The first record's seq. */
  seq: number;
  /** When it was handed over (the batch's write latency is counted from here). */
  posted: number;
  /** The write timeout, armed once the job before it is settled. */
  timer: NodeJS.Timeout | null;
  settled: Promise<void>;
  settle: () => void;
}

/** A record serialized with its chain fields, ready to write. */
interface BuiltRecord {
  seq: number;
  hash: string;
  line: string;
  /** Whether a caller appended it (counted as failed when its batch fails). */
  caller: boolean;
  /** The checkpoint's fields, for the operational log's anchor line. */
  checkpoint?: { keyId: string; head: { seq: number; hash: string }; sig: string };
}

interface Head {
  seq: number;
  hash: string;
}

const noop = (): void => undefined;

/** How far past its records a file's first fill starts (at most a quarter of the reservation). */
const RESERVE_GAP = 64 * 1024;
let zeros: Buffer | null = null;
/** 1 MiB of zeros, made on first use: the unit of a fill. */
function zeroBuffer(): Buffer {
  return (zeros ??= Buffer.alloc(1024 * 1024));
}

export class AuditWriter extends EventEmitter {
  readonly #dir: string;
  readonly #fs: AuditFs;
  readonly #log: AuditOpLogger | undefined;
  readonly #now: () => Date;
  readonly #o: Required<
    Pick<
      AuditWriterOptions,
      | 'maxFileBytes'
      | 'maxFileAgeMs'
      | 'checkpointEveryRecords'
      | 'checkpointEveryMs'
      | 'groupCommitMaxDelayMs'
      | 'groupCommitMaxRecords'
      | 'reserveBytes'
      | 'writeTimeoutMs'
      | 'probeIntervalMs'
      | 'offloadDepth'
    >
  >;
  readonly #opts: AuditWriterOptions;
  #signer: AuditSigner;
  readonly #offload: AuditWriteOffload | null;

  // Chain state: the last durable record and where it is.
  #head: Head | null = null;
  #fd: number | null = null;
  #file: string | null = null;
  /** Bytes of records in the current file: where the next batch is written. */
  #fileBytes = 0;
  #fileOpenedAt = 0;
  /** End of the zero-filled space of the current file (writes below it overwrite allocated blocks). */
  #reservedEnd = 0;
  /** A zero fill of [from, …) in progress: a batch that would reach `from` waits for it. */
  #reserving: { from: number; done: Promise<void> } | null = null;
  /** The current file's space could not be reserved: append from now on (until the next file). */
  #reserveFailed = false;
  /** End of the furthest zero fill started on the current file, finished or not (what retiring cuts off). */
  #fillEnd = 0;
  /** Files left behind (rotation, failure) still being trimmed and closed: close() waits for them. */
  readonly #retiring = new Set<Promise<void>>();

  #healthy = true;
  #closed = false;
  #pending: Pending[] = [];
  #scheduled = false;
  #draining = false;
  /** Serializes every unit of chain work (batches, checkpoints, rotation, recovery). */
  #serialTail: Promise<unknown> = Promise.resolve();
  /** Every file-system call sequence and helper job started so far, settled: what retiring a file waits for. */
  #inflight: Promise<void> = Promise.resolve();
  /** How many of those have not settled yet (recovery waits for none). */
  #unsettled = 0;
  /** Batches with the helper thread, oldest first (the pipeline; see #post). */
  readonly #jobs: Job[] = [];

  #recordsSinceCheckpoint = 0;
  #lastCheckpointAt = 0;
  #checkpointDue = false;
  #outage: { since: string; kind: string; failedRecords: number } | null = null;
  #lastAcked: ChainPoint | null = null;
  #maintenanceTimer: NodeJS.Timeout | null = null;
  #probeTimer: NodeJS.Timeout | null = null;

  readonly #stats: AuditStats = {
    healthy: true,
    records: 0,
    batches: 0,
    fsyncs: 0,
    lastBatchSize: 0,
    maxBatchSize: 0,
    lastWriteLatencyMs: 0,
    maxWriteLatencyMs: 0,
    totalWriteLatencyMs: 0,
    failures: 0,
    rejected: 0,
    lastErrorKind: null,
    lastErrorAt: null,
    checkpoints: 0,
    checkpointFailures: 0,
    rotations: 0,
    offloadedBatches: 0,
    pipelinedBatches: 0,
    recoveries: 0,
    pending: 0,
    reservedBytes: 0,
    file: null,
    head: null,
  };

  private constructor(opts: AuditWriterOptions) {
    super();
    this.#opts = opts;
    this.#dir = opts.dir;
    this.#fs = opts.fs ?? nodeAuditFs;
    this.#log = opts.logger;
    this.#now = opts.now ?? (() => new Date());
    this.#signer = opts.signer;
    this.#offload =
      opts.offload instanceof AuditWriteOffload
        ? opts.offload
        : (opts.offload ?? opts.fs === undefined)
          ? new AuditWriteOffload((reason) =>
              this.#log?.warn(
                { audit: { helper: reason } },
                'audit write helper thread stopped: batches are written on the event loop from now on',
              ),
            )
          : null;
    this.#o = {
      maxFileBytes: opts.maxFileBytes ?? 64 * 1024 * 1024,
      maxFileAgeMs: opts.maxFileAgeMs ?? 24 * 3600 * 1000,
      checkpointEveryRecords: opts.checkpointEveryRecords ?? 10_000,
      checkpointEveryMs: opts.checkpointEveryMs ?? 60_000,
      groupCommitMaxDelayMs: opts.groupCommitMaxDelayMs ?? 0,
      groupCommitMaxRecords: opts.groupCommitMaxRecords ?? 4096,
      reserveBytes: (opts.fs ?? nodeAuditFs).truncate ? (opts.reserveBytes ?? 4 * 1024 * 1024) : 0,
      writeTimeoutMs: opts.writeTimeoutMs ?? 2000,
      probeIntervalMs: opts.probeIntervalMs ?? 1000,
      offloadDepth: Math.max(1, Math.floor(opts.offloadDepth ?? 2)),
    };
  }

  /**
   * Open the log in `dir` (created if missing): find the end of the chain on disk, then
   * write a `start` marker, the signer's `key` record and a checkpoint to a new file.
   * Rejects (AUDIT_UNAVAILABLE, or AUDIT_TAIL_CORRUPT when the last complete line on
   * disk is not a valid record) if that cannot be made durable: do not serve without it.
   */
  static async open(opts: AuditWriterOptions): Promise<AuditWriter> {
    const w = new AuditWriter(opts);
    try {
      await w.#start();
    } catch (err) {
      w.#closed = true;
      w.#stopTimers();
      await w.#offload?.close();
      throw err;
    }
    return w;
  }

  async #start(): Promise<void> {
    let disk;
    try {
      disk = await this.#timed(async () => {
        await this.#fs.mkdir(this.#dir);
        return findDiskHead(this.#dir, this.#fs);
      });
    } catch (err) {
      if (err instanceof AuditError && err.code === AuditCodes.TAIL_CORRUPT) throw err;
      throw auditUnavailable(errorKind(err), `audit log cannot be opened (${errorKind(err)})`);
    }
    const last = disk.lastRecord;
    // Clean: the previous run ended with its stop record (or there was none, and no torn line).
    const clean =
      last === null
        ? disk.torn === null
        : disk.torn === null &&
          (last.type === 'stop' || (last.type === 'checkpoint' && last.reason === 'stop'));
    this.#head = disk.point ? { seq: disk.point.seq, hash: disk.point.hash } : null;
    const info = this.#opts.startInfo ? sanitizeValue(this.#opts.startInfo) : undefined;
    await this.#serial(() =>
      this.#commit(
        [
          {
            body: {
              type: 'start',
              from: disk.point,
              torn: disk.torn,
              clean,
              pid: process.pid,
              host: hostname(),
              ...(info !== undefined ? { info } : {}),
            },
          },
          { body: this.#keyBody('start', null) },
          { checkpoint: this.#signer, reason: 'start' },
        ],
        true,
      ),
    );
    this.#startMaintenance();
  }

  /**
   * Resolves once the helper thread takes batches (true), or will not (false: offload
   * off, or the thread failed to start). Batches before that are built on the loop.
   */
  offloadReady(): Promise<boolean> {
    return this.#offload ? this.#offload.ready() : Promise.resolve(false);
  }

  /** Whether appends are being accepted. */
  healthy(): boolean {
    return this.#healthy && !this.#closed;
  }

  stats(): AuditStats {
    return {
      ...this.#stats,
      healthy: this.healthy(),
      pending: this.#pending.length,
      reservedBytes: this.#fd === null ? 0 : Math.max(0, this.#reservedEnd - this.#fileBytes),
      file: this.#file,
      head: this.#head ? { ...this.#head } : null,
    };
  }

  /**
   * Record one event. Resolves once the record is durable; rejects with code
   * AUDIT_UNAVAILABLE when it cannot be (the caller must then refuse the request), or
   * AUDIT_BAD_RECORD for an event that is not an object of a known type. The event is
   * serialized here: changing it afterwards changes nothing.
   */
  append(event: AuditEvent): Promise<void> {
    if (this.#closed) return Promise.reject(auditUnavailable('CLOSED', 'audit log is closed'));
    if (!this.#healthy) {
      this.#stats.rejected++;
      if (this.#outage) this.#outage.failedRecords++;
      return Promise.reject(
        auditUnavailable(this.#stats.lastErrorKind ?? 'UNKNOWN', 'audit log unavailable'),
      );
    }
    let seg: BodySegments;
    try {
      seg = eventSegments(event);
    } catch (err) {
      return Promise.reject(err);
    }
    // Batches the helper has finished meanwhile settle now, not a loop turn later.
    if (this.#jobs.length > 0) this.#offload?.poll();
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ seg, caller: true, resolve, reject });
      this.#kick();
    });
  }

  /** Write a checkpoint now (after anything already queued). */
  async checkpoint(): Promise<void> {
    await this.#serial(() => this.#commit([{ checkpoint: this.#signer, reason: 'request' }], true));
  }

  /**
   * Switch to a new audit signing key. Writes a `key` record for it, a checkpoint by the
   * old key over that record (the old key vouches for the new one), then a checkpoint
   * by the new key. Rejects if the old key cannot sign that handover.
   */
  async rotateSigner(next: AuditSigner): Promise<void> {
    await this.#serial(async () => {
      const old = this.#signer;
      await this.#commit(
        [
          { body: this.#keyBody('rotation', old.keyId, next) },
          { checkpoint: old, reason: 'key-rotation' },
          { checkpoint: next, reason: 'key-rotation' },
        ],
        true,
        true,
      );
      this.#signer = next;
    });
  }

  /** Write a `stop` record and a final checkpoint, then close the file. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    // Let queued appends reach the disk first.
    while (this.#pending.length > 0 && this.#healthy) {
      await this.#drainStep();
    }
    this.#closed = true;
    this.#stopTimers();
    // Behind any batch, checkpoint or recovery still running, so nothing opens a file after this.
    await this.#serial(async () => {
      if (this.#healthy) {
        try {
          await this.#commit(
            [{ body: { type: 'stop' } }, { checkpoint: this.#signer, reason: 'stop' }],
            true,
          );
        } catch (err) {
          this.#log?.error({ audit: { kind: errorKind(err) } }, 'audit stop record not written');
        }
      }
      this.#rejectPending(auditUnavailable('CLOSED', 'audit log is closed'));
      const fd = this.#fd;
      this.#fd = null;
      if (fd !== null) this.#retire(fd, this.#fileBytes);
      await Promise.all(this.#retiring);
      await this.#offload?.close();
    });
  }

  // --- batching -------------------------------------------------------------------

  #kick(): void {
    if (this.#scheduled || this.#draining) return;
    this.#scheduled = true;
    const run = (): void => {
      this.#scheduled = false;
      void this.#drain();
    };
    if (this.#o.groupCommitMaxDelayMs > 0) setTimeout(run, this.#o.groupCommitMaxDelayMs);
    else setImmediate(run);
  }

  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (this.#pending.length > 0 && this.#healthy) await this.#drainStep();
    } finally {
      this.#draining = false;
    }
  }

  /** The next batch, or, while the helper holds offloadDepth batches, the wait for the oldest. */
  async #drainStep(): Promise<void> {
    const oldest = this.#jobs[0];
    if (oldest && this.#jobs.length >= this.#o.offloadDepth) await oldest.settled;
    else await this.#drainOnce();
  }

  async #drainOnce(): Promise<void> {
    await this.#serial(async () => {
      const batch = this.#pending.splice(0, this.#o.groupCommitMaxRecords);
      if (batch.length === 0) return;
      if (this.#canPost()) {
        this.#post(batch);
        return;
      }
      try {
        await this.#commit(batch);
        for (const p of batch) p.resolve();
      } catch (err) {
        this.#stats.rejected += batch.length;
        for (const p of batch) p.reject(err as Error);
      }
    }).catch(noop);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#serialTail.then(fn, fn);
    this.#serialTail = run.catch(noop);
    return run;
  }

  // --- chain ----------------------------------------------------------------------

  #keyBody(
    reason: string,
    previousKeyId: string | null,
    signer: AuditSigner = this.#signer,
  ): Record<string, unknown> {
    return {
      type: 'key',
      keyId: signer.keyId,
      alg: CHECKPOINT_ALG,
      spki: signer.publicKeySpkiDer().toString('base64'),
      reason,
      previousKeyId,
    };
  }

  /**
   * Make `entries` durable as consecutive records, after any due rotation and
   * checkpoint. Throws AUDIT_UNAVAILABLE (and enters the unhealthy state) on failure.
   * `internal`: also runs while closing. `strictSign`: a checkpoint that cannot be
   * signed fails the whole commit instead of being skipped.
   */
  async #commit(entries: Entry[], internal = false, strictSign = false): Promise<void> {
    // Anything else follows the batches still with the helper: it needs their head.
    await this.#pipelineIdle();
    if (!this.#healthy && !this.#recovering)
      throw auditUnavailable(this.#stats.lastErrorKind ?? 'UNKNOWN', 'audit log unavailable');
    if (this.#closed && !internal) throw auditUnavailable('CLOSED', 'audit log is closed');
    const now = this.#now().getTime();
    if (this.#rotationDue(now)) await this.#rotate();
    const all: Entry[] = [];
    if (this.#checkpointDueAt(now) && !entries.some((e) => 'checkpoint' in e)) {
      all.push({ checkpoint: this.#signer, reason: this.#checkpointDue ? 'count' : 'interval' });
    }
    all.push(...entries);
    if (all.length === 0) return;
    if (this.#offload?.usable && this.#fd !== null && all.every((e) => 'caller' in e)) {
      await this.#writeOffloaded(all as CallerEntry[], this.#offload, this.#fd);
      return;
    }
    const records = await this.#build(all, strictSign);
    await this.#writeRecords(records);
  }

  /** The current file is due for rotation (by size, or by age). */
  #rotationDue(now: number): boolean {
    if (this.#fd === null || this.#fileBytes === 0) return false;
    return this.#fileBytes >= this.#o.maxFileBytes || now - this.#fileOpenedAt >= this.#o.maxFileAgeMs;
  }

  /** A checkpoint is due (by count, or by time). */
  #checkpointDueAt(now: number): boolean {
    return (
      this.#checkpointDue ||
      (this.#recordsSinceCheckpoint > 0 && now - this.#lastCheckpointAt >= this.#o.checkpointEveryMs)
    );
  }

  // --- the pipeline -----------------------------------------------------------------
  // A batch of caller records goes to the helper thread while the batch before it is
  // still being written there (up to offloadDepth batches), instead of after its answer:
  // under load the helper then writes back to back, and a batch does not wait for the
  // busy loop to handle the previous answer before it is even handed over. The helper
  // chains each follow-on batch after the one before it (write-offload.ts); the answers
  // come in order, and each one moves the head and resolves its batch's appends, as a
  // batch written any other way does. Anything that needs the head itself (a checkpoint,
  // a rotation, a zero fill of reserved space, a batch built here, the stop records)
  // waits until every batch with the helper is answered. If one fails or times out, it
  // and every batch behind it fail closed together, and the helper is told to cancel
  // those it has not begun writing.

  /** Whether the next batch of caller records can go to the helper now, behind any already there. */
  #canPost(): boolean {
    if (!this.#offload?.usable || this.#fd === null || !this.#healthy || this.#closed) return false;
    // A zero fill in progress bounds a batch's bytes; one that is due must start first.
    if (this.#reserving || this.#fillRange()) return false;
    const now = this.#now().getTime();
    if (this.#rotationDue(now) || this.#checkpointDueAt(now)) return false;
    // A checkpoint by count that the batches already handed over will make due goes
    // before this one, as it would if they had been answered: the spacing of checkpoints
    // does not grow with the pipeline.
    let ahead = this.#recordsSinceCheckpoint;
    for (const j of this.#jobs) ahead += j.batch.length;
    return ahead < this.#o.checkpointEveryRecords;
  }

  /** Hand `batch` to the helper; its appends settle when the answer comes (#answered, #jobFailed). */
  #post(batch: Pending[]): void {
    const offload = this.#offload!;
    const before = this.#jobs.at(-1);
    const seq = before ? before.seq + before.batch.length : this.#head ? this.#head.seq + 1 : 0;
    const at: WriteAt = before
      ? 'after-previous'
      : { prev: this.#head ? this.#head.hash : GENESIS_PREV, position: this.#fileBytes };
    const ts = this.#now().toISOString(); // one instant per batch, as #build
    const bodies = batch.map((p) => p.seg);
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    const job: Job = { batch, seq, posted: performance.now(), timer: null, settled, settle };
    const op = offload.write(this.#fd!, bodies, seq, ts, at);
    this.#track(op);
    this.#jobs.push(job);
    if (before) this.#stats.pipelinedBatches++;
    else this.#arm(job);
    op.then(
      (o) => this.#answered(job, o),
      (err: unknown) => this.#jobFailed(job, err),
    );
  }

  /** Start `job`'s write timeout: from when the helper can begin it, so each write gets its own bound. */
  #arm(job: Job): void {
    job.timer = setTimeout(
      () =>
        this.#jobFailed(
          job,
          auditUnavailable('TIMEOUT', `audit write did not finish within ${this.#o.writeTimeoutMs} ms`),
        ),
      this.#o.writeTimeoutMs,
    );
  }

  #answered(job: Job, o: WriteOutcome): void {
    if (!this.#jobs.includes(job)) return; // failed already (timeout, or a batch before it)
    // Without a limit the helper never answers 'over'; answers come in order.
    if (o.kind !== 'written' || this.#jobs[0] !== job) {
      this.#jobFailed(job, Object.assign(new Error('audit helper: unexpected answer'), { code: 'WORKER' }));
      return;
    }
    this.#jobs.shift();
    if (job.timer) clearTimeout(job.timer);
    this.#stats.offloadedBatches++;
    const last = { seq: job.seq + job.batch.length - 1, hash: o.hash };
    this.#written(job.batch.length, last, o.bytes, performance.now() - job.posted, null);
    for (const p of job.batch) p.resolve();
    job.settle();
    const next = this.#jobs[0];
    if (next) this.#arm(next);
  }

  /** `job` failed (error, timeout, dead helper): it and every batch behind it fail closed. */
  #jobFailed(job: Job, err: unknown): void {
    if (!this.#jobs.includes(job)) return; // answered or failed already
    const jobs = this.#jobs.splice(0);
    this.#offload?.cancel();
    let records = 0;
    for (const j of jobs) {
      if (j.timer) clearTimeout(j.timer);
      records += j.batch.length;
    }
    // The furthest byte a write may have reached: the helper says where an I/O error
    // stopped; after a timeout it is unknown (the abandoned file is then not cut).
    const e = err as { position?: unknown; written?: unknown };
    const reach =
      typeof e.position === 'number' && typeof e.written === 'number' ? e.position + e.written : Infinity;
    this.#fail(err, records, reach);
    const failure = auditUnavailable(errorKind(err), `audit write failed (${errorKind(err)})`);
    this.#stats.rejected += records;
    for (const j of jobs) {
      for (const p of j.batch) p.reject(failure);
      j.settle();
    }
  }

  /** Resolves once no batch is with the helper (answered or failed). */
  async #pipelineIdle(): Promise<void> {
    for (let last = this.#jobs.at(-1); last; last = this.#jobs.at(-1)) await last.settled;
  }

  async #build(entries: Entry[], strictSign: boolean): Promise<BuiltRecord[]> {
    const out: BuiltRecord[] = [];
    let seq = this.#head ? this.#head.seq : -1;
    let prev = this.#head ? this.#head.hash : GENESIS_PREV;
    const ts = this.#now().toISOString(); // one instant per batch: its records are written together
    for (const e of entries) {
      let seg: BodySegments;
      let checkpoint: BuiltRecord['checkpoint'];
      if ('checkpoint' in e) {
        if (seq < 0) continue; // nothing to cover yet
        try {
          const sig = await e.checkpoint.sign(checkpointDigest(e.checkpoint.keyId, seq, prev));
          checkpoint = { keyId: e.checkpoint.keyId, head: { seq, hash: prev }, sig: sig.toString('base64') };
          seg = bodySegments({ type: 'checkpoint', ...checkpoint, reason: e.reason });
        } catch (err) {
          this.#stats.checkpointFailures++;
          this.#log?.warn(
            { audit: { keyId: e.checkpoint.keyId, kind: errorKind(err) } },
            'audit checkpoint not signed',
          );
          if (strictSign) throw auditUnavailable('SIGNER', 'audit signing key failed');
          continue;
        }
      } else {
        seg = 'caller' in e ? e.seg : bodySegments(e.body);
      }
      seq += 1;
      const { hash, line } = chainLine(seg, seq, ts, prev);
      prev = hash;
      out.push({ seq, hash, line, caller: 'caller' in e, ...(checkpoint ? { checkpoint } : {}) });
    }
    return out;
  }

  /** Seal the current file with a `rotate` record and a checkpoint; the next write opens a new file. */
  async #rotate(): Promise<void> {
    // rotate, checkpoint, then the next record (which starts the next file)
    let nextFile = auditFileName(this.#head!.seq + 3, this.#now());
    let records = await this.#build(
      [{ body: { type: 'rotate', nextFile } }, { checkpoint: this.#signer, reason: 'rotate' }],
      false,
    );
    if (records.length === 1) {
      // The checkpoint could not be signed: the next record follows the rotate record.
      nextFile = auditFileName(records[0]!.seq + 1, this.#now());
      records = await this.#build([{ body: { type: 'rotate', nextFile } }], false);
    }
    await this.#writeRecords(records);
    const fd = this.#fd;
    this.#fd = null;
    this.#nextFileName = nextFile;
    this.#stats.rotations++;
    // In the background: it waits for the file's zero fill, and the next file need not.
    if (fd !== null) this.#retire(fd, this.#fileBytes);
  }

  #nextFileName: string | null = null;
  /** True while the probe writes its resume marker: #commit may run though unhealthy. */
  #recovering = false;

  async #writeRecords(records: BuiltRecord[]): Promise<void> {
    if (records.length === 0) return;
    let text = '';
    for (const r of records) text += r.line + '\n';
    const buf = Buffer.from(text, 'utf8');
    const started = performance.now();
    // A new file starts at 0; the current one continues after its records.
    const position = this.#fd === null ? 0 : this.#fileBytes;
    // The timed work touches only locals: if it times out and finishes later, it must not
    // install a descriptor or a file name into the writer's state.
    let opened: number | null = null;
    let createdName: string | null = null;
    let fd: number;
    try {
      fd = await this.#timed(async () => {
        let target = this.#fd;
        if (target === null) {
          let name = this.#nextFileName ?? auditFileName(records[0]!.seq, this.#now());
          for (let attempt = 1; ; attempt++) {
            try {
              target = opened = await this.#fs.openWrite(join(this.#dir, name), true);
              break;
            } catch (err) {
              // Never append to a file we did not create: pick the next free name.
              if ((err as { code?: string }).code !== 'EEXIST' || attempt > 100) throw err;
              name = auditFileName(records[0]!.seq, this.#now(), attempt);
            }
          }
          createdName = name;
          await this.#fs.fsyncDir(this.#dir);
        } else {
          await this.#beforeWrite(position, buf.length);
        }
        await this.#writeAll(target, buf, buf.length, position);
        if (!this.#fs.syncedWrites) await this.#fs.fsync(target);
        return target;
      });
    } catch (err) {
      // A file this batch created is abandoned too; close it once the work has settled.
      // If nothing reached it, remove it: an outage is retried every probe interval, and
      // each attempt would otherwise leave one empty file (a day of full disk, ~86k
      // inodes). A file holding any bytes stays, as evidence the resume marker declares.
      const created = createdName;
      void this.#inflight
        .then(async () => {
          if (opened !== null) await this.#fs.close(opened);
          if (created === null || !this.#fs.unlink) return;
          const path = join(this.#dir, created);
          if ((await this.#fs.stat(path)).size === 0) await this.#fs.unlink(path);
        })
        .catch(noop);
      this.#fail(err, records.filter((r) => r.caller).length, position + buf.length);
      throw auditUnavailable(errorKind(err), `audit write failed (${errorKind(err)})`);
    }
    if (createdName !== null) {
      this.#fd = fd;
      this.#file = createdName;
      this.#nextFileName = null;
      this.#fileBytes = 0;
      this.#fileOpenedAt = this.#now().getTime();
      this.#reservedEnd = 0;
      this.#reserving = null;
      this.#reserveFailed = false;
      this.#fillEnd = 0;
    }
    const last = records[records.length - 1]!;
    this.#written(records.length, last, buf.length, performance.now() - started, records);
  }

  /**
   * A batch of caller records chained and written by the helper thread. Same contract
   * as #writeRecords: durable on return, else the writer fails closed and this throws.
   */
  async #writeOffloaded(entries: CallerEntry[], offload: AuditWriteOffload, fd: number): Promise<void> {
    const seq = this.#head ? this.#head.seq + 1 : 0;
    const prev = this.#head ? this.#head.hash : GENESIS_PREV;
    const ts = this.#now().toISOString(); // one instant per batch, as #build
    const bodies = entries.map((e) => e.seg);
    const started = performance.now();
    const position = this.#fileBytes;
    // Furthest byte the write may reach: the helper stops at a fill's start; without a
    // fill in its way, unknown until it answers (an abandoned file is then not cut).
    let reach = Infinity;
    let out: Extract<WriteOutcome, { kind: 'written' }>;
    try {
      out = await this.#timed(async () => {
        for (;;) {
          const fill = this.#reserving;
          const limit = fill ? Math.max(0, fill.from - position) : -1;
          reach = limit < 0 ? Infinity : position + limit;
          const o = await offload.write(fd, bodies, seq, ts, { prev, position }, limit);
          if (o.kind === 'written') return o;
          // Only a limit makes the helper answer 'over'.
          if (!fill) throw Object.assign(new Error('audit helper: over without a limit'), { code: 'WORKER' });
          await fill.done; // the batch reaches space being filled: wait, then ask again
        }
      });
    } catch (err) {
      const written = (err as { written?: unknown }).written;
      if (typeof written === 'number') reach = position + written;
      this.#fail(err, entries.length, reach);
      throw auditUnavailable(errorKind(err), `audit write failed (${errorKind(err)})`);
    }
    this.#stats.offloadedBatches++;
    const last = { seq: seq + entries.length - 1, hash: out.hash };
    this.#written(entries.length, last, out.bytes, performance.now() - started, null);
  }

  /**
   * Bookkeeping after a durable batch of `count` records ending at `last`. `records`:
   * the built records when the batch may hold checkpoints (null: callers' records only).
   */
  #written(count: number, last: Head, bytes: number, latency: number, records: BuiltRecord[] | null): void {
    this.#head = { seq: last.seq, hash: last.hash };
    this.#lastAcked = { file: this.#file!, seq: last.seq, hash: last.hash };
    this.#fileBytes += bytes;
    const s = this.#stats;
    s.records += count;
    s.batches++;
    s.fsyncs++;
    s.lastBatchSize = count;
    s.maxBatchSize = Math.max(s.maxBatchSize, count);
    s.lastWriteLatencyMs = latency;
    s.maxWriteLatencyMs = Math.max(s.maxWriteLatencyMs, latency);
    s.totalWriteLatencyMs += latency;
    if (records === null) this.#recordsSinceCheckpoint += count;
    else
      for (const r of records) {
        if (r.checkpoint) {
          s.checkpoints++;
          this.#recordsSinceCheckpoint = 0;
          this.#checkpointDue = false;
          this.#lastCheckpointAt = this.#now().getTime();
          // The external anchor: head and signature go to the operational stream.
          this.#log?.info(
            { audit: { checkpoint: { seq: r.seq, hash: r.hash, ...r.checkpoint } } },
            'audit checkpoint',
          );
        } else {
          this.#recordsSinceCheckpoint++;
        }
      }
    if (this.#recordsSinceCheckpoint >= this.#o.checkpointEveryRecords) {
      this.#checkpointDue = true;
      this.#kickMaintenance();
    }
    const info = { records: count, latencyMs: latency };
    this.#opts.onBatch?.(info);
    this.emit('batch', info);
    this.#reserveAhead();
  }

  // --- reserved space -------------------------------------------------------------
  // Appending with O_DSYNC makes the file system commit its journal for every batch (the
  // size and the newly allocated blocks must be durable with the data); overwriting
  // blocks the file already has needs only the data: measured here, an append of 13 KB
  // took 420-720 us and 177-255 us of CPU, an overwrite 230-260 us and 86-90 us. So the
  // writer keeps zeros written ahead of its records and writes batches at explicit
  // offsets into them. Fills run off the write path, 1 MiB per write; a batch never
  // writes into space being filled (it waits for the fill, under its write timeout).
  // The first fill of a file starts a little past the records, so the batches right
  // after a new file do not wait for it. Readers stop at the first NUL byte (files.ts);
  // the unused space is cut off at rotation and stop, and kept (as zeros, harmless) by a
  // file left by a crash.

  /** The zero fill a write of `bytes` at `position` would overlap, to wait for; else undefined. */
  #beforeWrite(position: number, bytes: number): Promise<void> | undefined {
    const r = this.#reserving;
    return r && position + bytes > r.from ? r.done : undefined;
  }

  /** The stretch of the current file a zero fill should cover now (less than half a reservation left), or null. */
  #fillRange(): { fd: number; from: number; to: number } | null {
    const size = this.#o.reserveBytes;
    const fd = this.#fd;
    // Not while closing: the stop records are the file's last, and the space would be cut off.
    if (size === 0 || fd === null || this.#reserving || this.#reserveFailed || this.#closed) return null;
    const at = this.#fileBytes;
    if (this.#reservedEnd - at >= size / 2) return null;
    const from = this.#reservedEnd >= at ? this.#reservedEnd : at + Math.min(RESERVE_GAP, size / 4);
    // Rotation comes at maxFileBytes: space past it would only be cut off again.
    const to = Math.min(from + size, this.#o.maxFileBytes);
    return to > from ? { fd, from, to } : null;
  }

  /** Start the zero fill that is due, unless batches are with the helper: where they end is not known until they are answered (the last answer starts it). */
  #reserveAhead(): void {
    const range = this.#jobs.length === 0 ? this.#fillRange() : null;
    if (!range) return;
    const { fd, from, to } = range;
    this.#fillEnd = to;
    // Still the current fill (a new file resets #reserving): only then does it count.
    const current = (): boolean => this.#reserving?.done === done;
    const done: Promise<void> = this.#zeroFill(fd, from, to)
      .then(
        () => {
          if (current()) this.#reservedEnd = to;
        },
        (err: unknown) => {
          if (!current()) return;
          this.#reserveFailed = true;
          this.#log?.warn(
            { audit: { kind: errorKind(err) } },
            'audit space could not be reserved: appending to this file',
          );
        },
      )
      .finally(() => {
        if (current()) this.#reserving = null;
      });
    this.#reserving = { from, done };
  }

  async #zeroFill(fd: number, from: number, to: number): Promise<void> {
    const zeros = zeroBuffer();
    for (let pos = from; pos < to; pos += zeros.length) {
      await this.#writeAll(fd, zeros, Math.min(zeros.length, to - pos), pos);
    }
    if (!this.#fs.syncedWrites) await this.#fs.fsync(fd);
  }

  /** Write `buf[0, length)` at `position`, through short writes; a write of nothing is EIO. */
  async #writeAll(fd: number, buf: Buffer, length: number, position: number): Promise<void> {
    for (let off = 0; off < length;) {
      const n = await this.#fs.write(fd, buf, off, length - off, position + off);
      if (n <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
      off += n;
    }
  }

  /**
   * Close a file nothing writes again, once its last write and its zero fill have
   * settled, cut to `keep` bytes when a fill (even one that failed part way) may have
   * put zeros beyond them: on a full disk that space is what recovery needs.
   */
  #retire(fd: number, keep: number): void {
    const fill = this.#reserving?.done;
    const reserved = this.#fillEnd > keep;
    const job: Promise<void> = Promise.all([this.#inflight, fill])
      .then(async () => {
        if (reserved) await this.#fs.truncate?.(fd, keep).catch(noop);
        await this.#fs.close(fd);
      })
      .catch(noop)
      .finally(() => this.#retiring.delete(job));
    this.#retiring.add(job);
  }

  /** Run file-system work under the write timeout; remember it so recovery can wait for it to settle. */
  async #timed<T>(fn: () => Promise<T>): Promise<T> {
    const op = fn();
    this.#track(op);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            auditUnavailable('TIMEOUT', `audit write did not finish within ${this.#o.writeTimeoutMs} ms`),
          ),
        this.#o.writeTimeoutMs,
      );
    });
    try {
      return await Promise.race([op, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Count `op` among the work a retired file and recovery wait for. */
  #track(op: Promise<unknown>): void {
    this.#unsettled++;
    const settled = op.then(noop, noop).then(() => {
      this.#unsettled--;
    });
    this.#inflight = Promise.all([this.#inflight, settled]).then(noop);
  }

  // --- failure and recovery -------------------------------------------------------

  /** `reach`: the furthest byte of the current file the failed write may have touched. */
  #fail(err: unknown, failedRecords: number, reach: number): void {
    const kind = errorKind(err);
    const s = this.#stats;
    s.failures++;
    s.lastErrorKind = kind;
    s.lastErrorAt = this.#now().toISOString();
    const fd = this.#fd;
    this.#fd = null;
    this.#nextFileName = null;
    // The file is abandoned: close it only once the call that failed or hung has settled,
    // keeping every byte a write may have put there (evidence for the resume marker).
    if (fd !== null) this.#retire(fd, reach);
    if (this.#outage) {
      this.#outage.failedRecords += failedRecords;
    } else {
      this.#outage = { since: s.lastErrorAt, kind, failedRecords };
    }
    const wasHealthy = this.#healthy;
    this.#healthy = false;
    if (wasHealthy) {
      this.#log?.error({ audit: { kind } }, 'audit log unavailable: refusing requests');
      this.#opts.onHealthChange?.(false, kind);
      this.emit('health', false, kind);
    }
    // Everything still queued behind this batch fails too: nothing is acknowledged
    // until a resume marker is durable.
    queueMicrotask(() => this.#rejectPending(auditUnavailable(kind, `audit log unavailable (${kind})`)));
    this.#scheduleProbe();
  }

  #rejectPending(err: AuditError): void {
    const pending = this.#pending.splice(0);
    if (pending.length > 0 && this.#outage) this.#outage.failedRecords += pending.length;
    this.#stats.rejected += pending.length;
    for (const p of pending) p.reject(err);
  }

  #scheduleProbe(): void {
    if (this.#probeTimer || this.#closed) return;
    this.#probeTimer = setTimeout(() => {
      this.#probeTimer = null;
      void this.#probe();
    }, this.#o.probeIntervalMs);
    this.#probeTimer.unref();
  }

  async #probe(): Promise<void> {
    if (this.#closed || this.#healthy) return;
    if (this.#unsettled > 0) {
      this.#scheduleProbe();
      return;
    }
    try {
      await this.#serial(() => this.#recover());
    } catch (err) {
      const kind = errorKind(err);
      this.#stats.lastErrorKind = kind;
      this.#log?.warn({ audit: { kind } }, 'audit log still unavailable');
      this.#scheduleProbe();
    }
  }

  async #recover(): Promise<void> {
    if (this.#closed) return;
    const disk = await this.#timed(() => findDiskHead(this.#dir, this.#fs));
    const acked = this.#lastAcked;
    if (acked) {
      // Acknowledged records must still be there: never continue from an older point.
      const p = disk.point;
      if (!p || p.seq < acked.seq || (p.seq === acked.seq && p.hash !== acked.hash)) {
        throw auditUnavailable('HEAD_REGRESSED', 'acknowledged audit records are missing from disk');
      }
    }
    this.#head = disk.point ? { seq: disk.point.seq, hash: disk.point.hash } : null;
    const outage = this.#outage;
    this.#recovering = true;
    try {
      await this.#commit(
        [
          { body: { type: 'resume', from: disk.point, torn: disk.torn, lastAcked: acked, outage } },
          { checkpoint: this.#signer, reason: 'resume' },
        ],
        true,
      );
    } finally {
      this.#recovering = false;
    }
    this.#healthy = true;
    this.#outage = null;
    this.#stats.recoveries++;
    this.#log?.info({ audit: { after: outage } }, 'audit log available again');
    this.#opts.onHealthChange?.(true, null);
    this.emit('health', true, null);
    if (this.#pending.length > 0) this.#kick();
  }

  // --- timers ---------------------------------------------------------------------

  #startMaintenance(): void {
    const every = Math.max(20, Math.min(this.#o.checkpointEveryMs, this.#o.maxFileAgeMs, 5000) / 2);
    this.#maintenanceTimer = setInterval(() => {
      if (!this.#healthy || this.#closed) return;
      const now = this.#now().getTime();
      const ckDue =
        this.#recordsSinceCheckpoint > 0 && now - this.#lastCheckpointAt >= this.#o.checkpointEveryMs;
      const rotDue =
        this.#fd !== null && this.#fileBytes > 0 && now - this.#fileOpenedAt >= this.#o.maxFileAgeMs;
      if (ckDue || rotDue) this.#kickMaintenance();
    }, every);
    this.#maintenanceTimer.unref();
  }

  #kickMaintenance(): void {
    void this.#serial(() => this.#commit([])).catch(noop);
  }

  #stopTimers(): void {
    if (this.#maintenanceTimer) clearInterval(this.#maintenanceTimer);
    if (this.#probeTimer) clearTimeout(this.#probeTimer);
    this.#maintenanceTimer = null;
    this.#probeTimer = null;
  }
}
