// The audit write worker's thread (started by write-offload.ts): takes a batch of caller
// records serialized by the loop (packBatch), chains them and writes them at the
// offset it is given to the audit file's descriptor, which the writer opened O_DSYNC, so
// the write returns once the batch is durable. One job at a time, in order; the writer
// sends the next only after this one's answer.
//
// Every answer carries the job's id: `{ id, hash, bytes }` once written; `{ id, over }`
// when the batch would take more than the job's limit (nothing written); `{ id, error,
// written }` with the errno name of a failed write (errorKind, as the writer reports any
// failed write) and the bytes written before it. Any other exception here (a job that is
// not what the writer sends) is a bug and ends the thread; the writer then fails that
// batch closed and builds later batches itself.

import { writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { chainBatch, unpackBatch } from './chain-batch.js';
import { errorKind } from './errors.js';
import type { WriteJob, WriteAnswer } from './write-offload.js';

const port = parentPort;
if (!port) throw new Error('write-worker.ts runs as a worker thread');

port.on('message', (job: WriteJob) => {
  // Only the writer posts here: a malformed job is a bug, and ends the thread.
  const batch = chainBatch(unpackBatch(job.packed), job.seq, job.ts, job.prev);
  const buf = Buffer.from(batch.text, 'utf8');
  if (job.limit >= 0 && buf.length > job.limit) {
    port.postMessage({ id: job.id, over: buf.length } satisfies WriteAnswer);
    return;
  }
  let answer: WriteAnswer;
  let off = 0;
  try {
    while (off < buf.length) {
      const n = writeSync(job.fd, buf, off, buf.length - off, job.position + off);
      if (n <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
      off += n;
    }
    answer = { id: job.id, hash: batch.hash, bytes: buf.length };
  } catch (err) {
    answer = { id: job.id, error: errorKind(err), written: off };
  }
  port.postMessage(answer);
});
port.postMessage({ ready: true });
