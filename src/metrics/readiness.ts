// Readiness as /readyz reports it: hyokd can serve only when the HSM is ready and the
// audit log accepts records (audit fails closed, so an unhealthy sink is an outage).

import type { HsmState } from '../hsm/types.js';

export interface Readiness {
  ready: boolean;
  /** Why not ready; empty when ready. Short fixed phrases, never secrets. */
  reasons: string[];
}

export interface ReadinessSources {
  /** The backend's state(); undefined while no backend is open. */
  hsm?: () => HsmState | undefined;
  /** The audit writer's healthy(); undefined while no writer is open. */
  audit?: () => boolean | undefined;
}

/** A `ready` callback for startMetricsServer from the HSM backend and audit writer. */
export function readinessFrom(sources: ReadinessSources): () => Readiness {
  return () => {
    const reasons: string[] = [];
    const hsm = safe(sources.hsm);
    if (hsm === FAILED) reasons.push('hsm: state check failed');
    else if (hsm === undefined) reasons.push('hsm: not started');
    else if (hsm !== 'ready') reasons.push(`hsm: ${hsm}`);
    const audit = safe(sources.audit);
    if (audit === FAILED) reasons.push('audit: health check failed');
    else if (audit === undefined) reasons.push('audit: not started');
    else if (!audit) reasons.push('audit: unhealthy');
    return { ready: reasons.length === 0, reasons };
  };
}

const FAILED = Symbol('failed');

function safe<T>(fn: (() => T | undefined) | undefined): T | undefined | typeof FAILED {
  if (!fn) return undefined;
  try {
    return fn();
  } catch {
    return FAILED;
  }
}
