// What the server reports about each call, for metrics (src/metrics/ implements it).
// Kept as an interface so the server does not depend on prom-client and tests can
// observe calls directly.

/** Who called, coarsely: label values must stay few (never the raw identity). */
export type IdentityClass = 'client' | 'admin' | 'unknown' | 'anonymous';

export interface CallReport {
  /** `hyok.v1.Hyok`, `hyok.admin.v1.KeyAdmin`, `xks` … */
  service: string;
  /** RPC method name, e.g. `Unwrap`. */
  method: string;
  /** gRPC status name (`OK`, `INVALID_ARGUMENT`, …). */
  status: string;
  /** The registry reason for failures (`INVALID_CIPHERTEXT`, …), or '' for OK. */
  reason: string;
  identityClass: IdentityClass;
  /** End-to-end latency, seconds. */
  seconds: number;
  /** Time spent in the HSM step, seconds, when there was one. */
  hsmSeconds?: number;
  /** Items in a batch or stream message (1 for unary). */
  items: number;
}

export interface CallObserver {
  callStarted(service: string, method: string): void;
  callFinished(report: CallReport): void;
}

/** Observes nothing: for embedders and tests that do not want metrics. */
export const noopObserver: CallObserver = {
  callStarted() {},
  callFinished() {},
};
