// The audit write worker's thread (started by write-offload.ts): takes a batch of caller
// records serialized by the loop (packBatch), chains them and writes them to the audit
// file's descriptor, which the writer opened O_DSYNC, so the write returns once the batch
// is durable. One job at a time, in order. A job goes where it says, or right after the
// previous job's batch: this thread keeps that point (the last hash it wrote and the
// offset after it) and forgets it whenever a job is not written.
//
// Every answer carries the job's id: `{ id, hash, bytes, position }` once written;
// `{ id, over }` when the batch would take more than the job's limit (nothing written);
// `{ id, error, written, position }` with the errno name of a failed write (errorKind, as
// the writer reports any failed write) and the bytes written before it; `{ id, cancelled }`
// for a job posted before a cancel, or following one that was not written. Any other
// exception here (a job that is not what the writer sends) is a bug and ends the thread;
// the writer then fails those batches closed and builds later batches itself.

import { writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { chainBatch, unpackBatch } from './chain-batch.js';
import { errorKind } from './errors.js';
import type { WriteJob, WriteAnswer } from './write-offload.js';

const port = parentPort;
if (!port) throw new Error('write-worker.ts runs as a worker thread');
const epoch = (workerData as { epoch: Int32Array }).epoch;

/** Where the last job's batch ended (its last hash, the offset after it); null after a job not written. */
let end: { prev: string; position: number } | null = null;

port.on('message', (job: WriteJob) => {
  const at = job.at === 'after-previous' ? end : job.at;
  end = null;
  if (at === null) {
    port.postMessage({ id: job.id, cancelled: true } satisfies WriteAnswer);
    return;
  }
  // Only the writer posts here: a malformed job is a bug, and ends the thread.
  const batch = chainBatch(unpackBatch(job.packed), job.seq, job.ts, at.prev);
  const buf = Buffer.from(batch.text, 'utf8');
  if (job.limit >= 0 && buf.length > job.limit) {
    port.postMessage({ id: job.id, over: buf.length } satisfies WriteAnswer);
    return;
  }
  // Read last: a cancel that came while this batch was being chained still counts.
  if (Atomics.load(epoch, 0) !== job.epoch) {
    port.postMessage({ id: job.id, cancelled: true } satisfies WriteAnswer);
    return;
  }
  let answer: WriteAnswer;
  let off = 0;
  try {
    while (off < buf.length) {
      const n = writeSync(job.fd, buf, off, buf.length - off, at.position + off);
      if (n <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
      off += n;
    }
    answer = { id: job.id, hash: batch.hash, bytes: buf.length, position: at.position };
    end = { prev: batch.hash, position: at.position + buf.length };
  } catch (err) {
    answer = { id: job.id, error: errorKind(err), written: off, position: at.position };
  }
  port.postMessage(answer);
});
port.postMessage({ ready: true });
