// One timed run of one case, as every runner (in-process or child) reports it.

export interface Measurement {
  /** Correct operations completed inside the measured window. */
  ops: number;
  seconds: number;
  opsPerSec: number;
  /** Operations that failed (any error code) inside the window. */
  errors: number;
  /** Operations that succeeded but returned a plaintext different from the expected one. */
  mismatches: number;
  /** user + system CPU of the whole measuring process during the window. */
  cpuSeconds: number;
  /** Busy CPU seconds of the whole machine during the window (NaN if unknown). */
  systemBusySeconds: number;
  /** Runner-specific detail (lanes, per-thread counts, error codes). */
  detail?: Record<string, unknown>;
}

/** CPU cores kept busy on average: cpuSeconds / seconds. */
export function coresBusy(m: Measurement): number {
  return m.seconds > 0 ? m.cpuSeconds / m.seconds : Number.NaN;
}

/** Cores that other processes kept busy during the window: the noise on a shared machine. */
export function otherCores(m: Measurement): number {
  return m.seconds > 0 ? Math.max(0, m.systemBusySeconds - m.cpuSeconds) / m.seconds : Number.NaN;
}

/** Microseconds of CPU (all threads of the measuring process) per correct operation. */
export function cpuMicrosPerOp(m: Measurement): number {
  return m.ops > 0 ? (m.cpuSeconds * 1e6) / m.ops : Number.NaN;
}

/** A Measurement from the JSON line a child runner (c_loop, the pkcs11js loop) prints. */
export function measurementFromChildJson(
  j: Record<string, unknown>,
  detail?: Record<string, unknown>,
): Measurement {
  return {
    ops: Number(j.ops),
    seconds: Number(j.seconds),
    opsPerSec: Number(j.ops_per_sec),
    errors: Number(j.errors),
    mismatches: Number(j.mismatches),
    cpuSeconds: Number(j.cpu_seconds),
    systemBusySeconds:
      j.system_busy_seconds === null || Number(j.system_busy_seconds) < 0
        ? Number.NaN
        : Number(j.system_busy_seconds),
    ...(detail ? { detail } : {}),
  };
}
