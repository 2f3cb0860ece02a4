// Audit errors. Callers branch on `code`; `kind` says what broke (an errno name such as
// ENOSPC, or TIMEOUT for a hung write) and is safe to export as a metric label.

export const AuditCodes = {
  /** The audit log cannot durably record: the request must be refused. */
  UNAVAILABLE: 'AUDIT_UNAVAILABLE',
  /** The tail of the log on disk is not a valid record: refuse to start over it. */
  TAIL_CORRUPT: 'AUDIT_TAIL_CORRUPT',
  /** The event given to `append` is not an object of a known type. */
  BAD_RECORD: 'AUDIT_BAD_RECORD',
} as const;

export class AuditError extends Error {
  override readonly name = 'AuditError';
  readonly code: string;
  readonly kind: string;

  constructor(code: string, kind: string, message: string) {
    super(message);
    this.code = code;
    this.kind = kind;
  }
}

export function auditUnavailable(kind: string, message: string): AuditError {
  return new AuditError(AuditCodes.UNAVAILABLE, kind, message);
}

/** A short, safe label for an I/O failure: the errno name, or TIMEOUT / UNKNOWN. */
export function errorKind(err: unknown): string {
  if (err instanceof AuditError) return err.kind;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,32}$/.test(code) ? code : 'UNKNOWN';
}
