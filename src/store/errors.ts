// Errors from the metadata store. Callers branch on `code`, never on the message.
// Messages name keys and fields but never hold key material (the store never sees any).

export const StoreCodes = {
  /** The named key, version, intent or request does not exist. */
  NOT_FOUND: 'STORE_NOT_FOUND',
  /** A key with that name (or a version with that CKA_ID) already exists. */
  ALREADY_EXISTS: 'STORE_ALREADY_EXISTS',
  /** An argument is malformed: bad name, retention out of range, bad hex. */
  INVALID_ARGUMENT: 'STORE_INVALID_ARGUMENT',
  /** The change is forbidden in the current state (purge protection off, recover a live key…). */
  FAILED_PRECONDITION: 'STORE_FAILED_PRECONDITION',
  /** A compare-and-set lost: the row changed since it was read. */
  CONFLICT: 'STORE_CONFLICT',
  /** The database was written by a newer hyokd; this build refuses to touch it. */
  SCHEMA_TOO_NEW: 'STORE_SCHEMA_TOO_NEW',
  /** The store was closed. */
  CLOSED: 'STORE_CLOSED',
} as const;

export type StoreCode = (typeof StoreCodes)[keyof typeof StoreCodes];

export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly code: StoreCode;

  constructor(code: StoreCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function isStoreError(err: unknown, code?: StoreCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}
