// Errors from the HSM layer. Codes are PKCS#11 return value names (`CKR_*`, from a table
// generated from the packaged header at build time) or hyokd's own conditions below.
// Callers branch on `code` and `retriable`, never on the message.

/** hyokd's own conditions, beside the `CKR_*` names. */
export const HyokdHsmCodes = {
  /** The bounded submission queue is full: back off (maps to RESOURCE_EXHAUSTED). */
  QUEUE_FULL: 'HYOKD_QUEUE_FULL',
  /** The module is being re-initialized after a device-level error: retry later. */
  UNAVAILABLE: 'HYOKD_HSM_UNAVAILABLE',
  /** `close()` was called: no more work is accepted. */
  CLOSED: 'HYOKD_CLOSED',
  /** The key named by a `KeyRef` is not on the token. */
  KEY_NOT_FOUND: 'HYOKD_KEY_NOT_FOUND',
  /** The token does not support what was asked (probed, not guessed). */
  UNSUPPORTED: 'HYOKD_UNSUPPORTED',
} as const;

export interface HsmErrorFields {
  code: string;
  rv: number;
  retriable: boolean;
  message: string;
  op?: string;
}

export class HsmError extends Error {
  override readonly name = 'HsmError';
  readonly code: string;
  /** The PKCS#11 return value (`CK_RV`), or -1 for hyokd's own codes. */
  readonly rv: number;
  readonly retriable: boolean;
  readonly op: string | undefined;

  constructor(fields: HsmErrorFields) {
    super(fields.message);
    this.code = fields.code;
    this.rv = fields.rv;
    this.retriable = fields.retriable;
    this.op = fields.op;
  }
}

/** Data-level failures: the input was bad (wrong key, tag, AAD), the session is fine. */
export function isDataError(code: string): boolean {
  return (
    code === 'CKR_ENCRYPTED_DATA_INVALID' ||
    code === 'CKR_ENCRYPTED_DATA_LEN_RANGE' ||
    code === 'CKR_WRAPPED_KEY_INVALID' ||
    code === 'CKR_WRAPPED_KEY_LEN_RANGE' ||
    code === 'CKR_SIGNATURE_INVALID' ||
    code === 'CKR_SIGNATURE_LEN_RANGE' ||
    code === 'CKR_DATA_INVALID' ||
    code === 'CKR_DATA_LEN_RANGE' ||
    code === 'CKR_AEAD_DECRYPT_FAILED'
  );
}
