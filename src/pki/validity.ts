// Validity windows for dev certificates.

export interface Validity {
  /** Start of validity. Default: one minute ago, to tolerate small clock skew between hosts. */
  notBefore?: Date;
  /** End of validity. Default depends on the certificate kind. */
  notAfter?: Date;
}

export const DAY_MS = 24 * 60 * 60 * 1000;
const SKEW_MS = 60 * 1000;

/** Resolves a validity window; throws when it is empty (notAfter not after notBefore). */
export function resolveValidity(
  v: Validity | undefined,
  defaultDays: number,
): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  const notBefore = v?.notBefore ?? new Date(now - SKEW_MS);
  const notAfter = v?.notAfter ?? new Date(notBefore.getTime() + SKEW_MS + defaultDays * DAY_MS);
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) {
    throw new RangeError('certificate validity: notBefore/notAfter must be valid dates');
  }
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new RangeError(
      `certificate validity: notAfter (${notAfter.toISOString()}) must be later than notBefore (${notBefore.toISOString()})`,
    );
  }
  return { notBefore, notAfter };
}
