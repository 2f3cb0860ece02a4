// What the coordinator (run.ts) hands each load-generator worker thread and what comes back.
import type { RecordableHistogram } from 'node:perf_hooks';

/** echo/unary/batch: one HTTP/2 stream per call; stream: long-lived bidi streams. */
export type CallKind = 'echo' | 'unary' | 'batch' | 'stream';

export interface Target {
  port: number;
  caPem: string;
  certPem: string;
  keyPem: string;
}

export interface WorkerJob {
  target: Target;
  kind: CallKind;
  /** e.g. /hyok.v1.Hyok/Unwrap */
  path: string;
  /** Pre-encoded gRPC frames (5-byte prefix + message), sent in turn. */
  frames: Uint8Array[];
  /** Where this worker starts in `frames`, so workers do not send the same frames in step. */
  frameOffset: number;
  connections: number;
  /** closed: each connection keeps `concurrency` calls in flight; open: calls start on a fixed schedule. */
  mode: 'closed' | 'open';
  /** closed: calls in flight per connection; stream: messages in flight per stream. */
  concurrency: number;
  /** stream: bidi streams per connection. */
  streamsPerConnection: number;
  /** open: calls per second started by this worker. */
  rate: number;
  /** open: a scheduled call is skipped (and counted) when this many are outstanding. */
  maxOutstanding: number;
  warmupMs: number;
  measureMs: number;
  /** grpc-timeout of each unary/batch call in ms (0: none). */
  deadlineMs: number;
  /** Keep the response of every N-th completed call (or stream message) for the DEK check. */
  captureEvery: number;
  maxCaptures: number;
}

export interface Capture {
  /** Index of the request frame answered; -1 for streams (the correlation id says). */
  frame: number;
  /** The response message (without the 5-byte prefix). */
  message: Uint8Array;
}

export interface WorkerResult {
  /** Calls (stream: messages) completed inside the measured window. */
  calls: number;
  /** Items answered OK inside the window (unary: = OK calls; batch: OK items). */
  okItems: number;
  /** Items answered with a non-OK per-item status (batch, stream). */
  failedItems: number;
  /** Calls that ended with a non-OK grpc-status, by status code. */
  nonOk: Record<string, number>;
  /** Calls that failed below gRPC (stream reset, connection error) or whose response was malformed. */
  transportErrors: number;
  /** open: scheduled calls not sent because maxOutstanding were outstanding. */
  skipped: number;
  /** Calls still outstanding when the drain timed out. */
  abandoned: number;
  /** Latency in microseconds of calls completed inside the window (open: from the scheduled start). */
  histogram: RecordableHistogram;
  captures: Capture[];
}

export type ToWorker = { type: 'go'; at: number };
export type FromWorker =
  { type: 'ready' } | { type: 'done'; result: WorkerResult } | { type: 'failed'; error: string };
