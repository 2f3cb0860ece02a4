// The one registry of hyokd's client-visible errors.
//
// Every error a client can see has a stable code (also the google.rpc.ErrorInfo
// `reason`), a message template that is safe to send, a gRPC status, an HTTP status for
// REST adapters (AWS XKS …) and whether retrying can help. Everything else (HSM return
// values, stack traces, SQLite messages) stays in the operational log: `toHyokError`
// turns any unknown error into INTERNAL with a generic message and keeps the original
// only as `cause`, which never goes on the wire.
//
// README.md's error table is generated from this registry (`errorsTableMarkdown()`), and
// test/errors.test.ts fails when a code is missing from it.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Metadata, status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { HsmError, HyokdHsmCodes, isDataError } from './hsm/errors.js';

/** The google.rpc.ErrorInfo domain of every hyokd error. */
export const ERROR_DOMAIN = 'hyokd.dev';

export interface ErrorSpec {
  /** gRPC status code (a value of `status` from @grpc/grpc-js). */
  grpc: status;
  /** HTTP status for REST adapters. */
  http: number;
  /** Whether the same request may succeed if retried later (with backoff). */
  retriable: boolean;
  /**
   * Safe client-facing message. `{name}` placeholders are filled from the error's params;
   * params must themselves be safe (the caller's own input, limits, ids).
   */
  message: string;
}

// The canonical gRPC → HTTP mapping (google.rpc.Code docs) is used throughout, so an
// adapter can rely on either number.
const S = status;

export const ERRORS = {
  // --- request validation --------------------------------------------------------------
  INVALID_REQUEST: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'Invalid request: {detail}',
  },
  MALFORMED_ENVELOPE: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'Malformed envelope: {detail}',
  },
  INVALID_CIPHERTEXT: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'The envelope could not be opened: wrong key version, wrong AAD or corrupted data',
  },
  DEK_SIZE: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'DEK length must be 16, 24 or 32 bytes, got {length}',
  },
  AAD_SIZE: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'AAD is {length} bytes; the limit is {limit}',
  },
  BATCH_TOO_LARGE: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'Batch has {count} items; the limit is {limit}',
  },
  KEY_NAME_INVALID: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'Invalid key name: 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit',
  },
  REWRAP_ALGORITHM: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'Unknown or unspecified rewrap algorithm',
  },
  REWRAP_KEY_INVALID: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'The rewrap public key is not a valid DER SubjectPublicKeyInfo',
  },
  REWRAP_KEY_TYPE: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'The rewrap public key does not fit the algorithm: {detail}',
  },
  REWRAP_KEY_SIZE: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'The rewrap RSA key must have 2048 to 16384 bits, got {bits}',
  },
  // --- keys ------------------------------------------------------------------------------
  KEY_NOT_FOUND: { grpc: S.NOT_FOUND, http: 404, retriable: false, message: 'Key not found' },
  VERSION_NOT_FOUND: { grpc: S.NOT_FOUND, http: 404, retriable: false, message: 'Key version not found' },
  KEY_DISABLED: { grpc: S.FAILED_PRECONDITION, http: 400, retriable: false, message: 'The key is disabled' },
  KEY_DELETED: {
    grpc: S.FAILED_PRECONDITION,
    http: 400,
    retriable: false,
    message: 'The key is deleted (recoverable until its purge date)',
  },
  VERSION_DISABLED: {
    grpc: S.FAILED_PRECONDITION,
    http: 400,
    retriable: false,
    message: 'The key version is disabled',
  },
  OPERATION_NOT_ALLOWED: {
    grpc: S.FAILED_PRECONDITION,
    http: 400,
    retriable: false,
    message: 'The key does not allow this operation',
  },
  // --- callers ---------------------------------------------------------------------------
  UNAUTHENTICATED: {
    grpc: S.UNAUTHENTICATED,
    http: 401,
    retriable: false,
    message: 'No verified client identity',
  },
  PERMISSION_DENIED: { grpc: S.PERMISSION_DENIED, http: 403, retriable: false, message: 'Permission denied' },
  // --- capacity and dependencies -----------------------------------------------------------
  QUEUE_FULL: {
    grpc: S.RESOURCE_EXHAUSTED,
    http: 429,
    retriable: true,
    message: 'The HSM queue is full; retry with backoff',
  },
  HSM_UNAVAILABLE: {
    grpc: S.UNAVAILABLE,
    http: 503,
    retriable: true,
    message: 'The HSM is unavailable; retry later',
  },
  AUDIT_UNAVAILABLE: {
    grpc: S.UNAVAILABLE,
    http: 503,
    retriable: true,
    message: 'The audit log cannot record the request, so it was refused; retry later',
  },
  DEADLINE_EXCEEDED: {
    grpc: S.DEADLINE_EXCEEDED,
    http: 504,
    retriable: true,
    message: 'The deadline expired before the operation completed',
  },
  CANCELLED: { grpc: S.CANCELLED, http: 499, retriable: false, message: 'The request was cancelled' },
  UNSUPPORTED: {
    grpc: S.UNIMPLEMENTED,
    http: 501,
    retriable: false,
    message: 'Not supported by this HSM or server: {detail}',
  },
  INTERNAL: { grpc: S.INTERNAL, http: 500, retriable: false, message: 'Internal error' },
  // --- key lifecycle -------------------------------------------------------------------
  KEY_EXISTS: {
    grpc: S.ALREADY_EXISTS,
    http: 409,
    retriable: false,
    message: 'A key with this name already exists (possibly soft-deleted)',
  },
  KEY_NOT_DELETED: {
    grpc: S.FAILED_PRECONDITION,
    http: 400,
    retriable: false,
    message: 'The key is not deleted',
  },
  KEY_KIND_MISMATCH: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'The key material does not match the requested kind',
  },
  PURGE_PROTECTED: {
    grpc: S.FAILED_PRECONDITION,
    http: 400,
    retriable: false,
    message: 'The key is purge-protected and cannot be purged before its retention period ends',
  },
  RETENTION_RANGE: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'Retention must be 7 to 90 days, got {days}',
  },
  DOMAIN_MISMATCH: {
    grpc: S.FAILED_PRECONDITION,
    http: 400,
    retriable: false,
    message: 'The backup belongs to another security domain',
  },
  DOMAIN_BOUND: {
    grpc: S.FAILED_PRECONDITION,
    http: 409,
    retriable: false,
    message: 'This hyokd is already bound to a security domain',
  },
  DOMAIN_NOT_BOUND: {
    grpc: S.FAILED_PRECONDITION,
    http: 400,
    retriable: false,
    message: 'No security domain is bound to this hyokd (run domain init or domain join first)',
  },
  DOWNGRADE: {
    grpc: S.FAILED_PRECONDITION,
    http: 400,
    retriable: false,
    message: 'The backup is older than the key history already known',
  },
  IMPORT_BLOB_INVALID: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'The wrapped key material could not be imported',
  },
  IMPORT_KEY_EXPIRED: {
    grpc: S.FAILED_PRECONDITION,
    http: 400,
    retriable: false,
    message: 'The import key has expired or does not exist',
  },
  POLICY_INVALID: {
    grpc: S.INVALID_ARGUMENT,
    http: 400,
    retriable: false,
    message: 'Invalid policy: {detail}',
  },
  ETAG_MISMATCH: {
    grpc: S.ABORTED,
    http: 409,
    retriable: false,
    message: 'The resource changed since it was read; read it again',
  },
  QUORUM_REQUIRED: {
    grpc: S.FAILED_PRECONDITION,
    http: 400,
    retriable: false,
    message: 'This operation needs approval by a quorum; see quorumRequestId',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

export function isErrorCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERRORS, code);
}

/** Values for a message's `{placeholders}`; also copied into ErrorInfo metadata. */
export type ErrorParams = Record<string, string | number | boolean | bigint>;

export interface HyokErrorOptions {
  /** Fill the message template; must be safe to show the caller. */
  params?: ErrorParams;
  /** Extra ErrorInfo metadata (safe strings only, e.g. quorumRequestId). */
  metadata?: Record<string, string>;
  /** The underlying error: for the operational log only, never sent. */
  cause?: unknown;
}

function render(template: string, params: ErrorParams): string {
  return template.replace(/\{(\w+)\}/g, (_m, name: string) =>
    Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : '?',
  );
}

/** An error with a registry code. `message` is safe to send to clients. */
export class HyokError extends Error {
  override readonly name = 'HyokError';
  readonly code: ErrorCode;
  readonly grpcCode: status;
  readonly httpStatus: number;
  readonly retriable: boolean;
  /** ErrorInfo metadata: the params (stringified) plus any extra metadata. */
  readonly metadata: Record<string, string>;

  constructor(code: ErrorCode, options: HyokErrorOptions = {}) {
    const spec: ErrorSpec = ERRORS[code];
    const params = options.params ?? {};
    super(render(spec.message, params), options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.grpcCode = spec.grpc;
    this.httpStatus = spec.http;
    this.retriable = spec.retriable;
    const md: Record<string, string> = {};
    for (const [k, v] of Object.entries(params)) md[k] = String(v);
    Object.assign(md, options.metadata ?? {});
    this.metadata = md;
  }
}

/** What kind of HSM operation failed: decides whether data errors mean "bad ciphertext". */
export type HsmOpHint = 'decrypt' | 'rsaDecrypt' | 'unwrapKey' | 'verify' | (string & {});

const DECRYPT_LIKE = new Set(['decrypt', 'rsaDecrypt', 'unwrapKey']);

/**
 * Maps an `HsmError` to a registry error. `opHint` (default: the error's own `op`) is
 * needed because SoftHSM2 reports a GCM tag failure as CKR_GENERAL_ERROR: only for a
 * decrypt does that mean INVALID_CIPHERTEXT; anywhere else it is INTERNAL.
 */
export function fromHsmError(err: HsmError, opHint?: HsmOpHint): HyokError {
  const op = opHint ?? err.op;
  const code = err.code;
  if (code === HyokdHsmCodes.QUEUE_FULL) return new HyokError('QUEUE_FULL', { cause: err });
  if (code === 'HYOKD_DEADLINE_EXCEEDED') return new HyokError('DEADLINE_EXCEEDED', { cause: err });
  if (code === HyokdHsmCodes.UNAVAILABLE || code === HyokdHsmCodes.CLOSED || err.retriable) {
    return new HyokError('HSM_UNAVAILABLE', { cause: err });
  }
  if (code === HyokdHsmCodes.KEY_NOT_FOUND) return new HyokError('KEY_NOT_FOUND', { cause: err });
  if (code === HyokdHsmCodes.UNSUPPORTED) {
    return new HyokError('UNSUPPORTED', {
      params: { detail: 'mechanism not available on the HSM' },
      cause: err,
    });
  }
  if (op !== undefined && DECRYPT_LIKE.has(op)) {
    if (isDataError(code) || (op === 'decrypt' && code === 'CKR_GENERAL_ERROR')) {
      return new HyokError('INVALID_CIPHERTEXT', { cause: err });
    }
  }
  return new HyokError('INTERNAL', { cause: err });
}

/**
 * Any thrown value → a registry error. HyokErrors pass through; HsmErrors are mapped;
 * everything else becomes INTERNAL with a generic message (the original is the cause,
 * for the operational log only).
 */
export function toHyokError(err: unknown, opHint?: HsmOpHint): HyokError {
  if (err instanceof HyokError) return err;
  if (err instanceof HsmError) return fromHsmError(err, opHint);
  return new HyokError('INTERNAL', { cause: err });
}

// --- google.rpc.Status encoding -----------------------------------------------------------

/** The repository's `proto/` directory, found by walking up from this file (src/ or dist/src/). */
export function protoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'proto', 'google', 'rpc', 'status.proto'))) return join(dir, 'proto');
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error('hyokd: proto/ directory not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

interface RpcTypes {
  status: protobuf.Type;
  errorInfo: protobuf.Type;
}
let rpcTypes: RpcTypes | undefined;

function loadRpcTypes(): RpcTypes {
  if (rpcTypes) return rpcTypes;
  const base = protoDir();
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : join(base, target));
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
  rpcTypes = {
    status: root.lookupType('google.rpc.Status'),
    errorInfo: root.lookupType('google.rpc.ErrorInfo'),
  };
  return rpcTypes;
}

export const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';

/** The bytes of `grpc-status-details-bin`: google.rpc.Status with one ErrorInfo. */
export function encodeStatusDetails(err: HyokError): Buffer {
  const t = loadRpcTypes();
  const info = t.errorInfo
    .encode(t.errorInfo.fromObject({ reason: err.code, domain: ERROR_DOMAIN, metadata: err.metadata }))
    .finish();
  const st = t.status.fromObject({
    code: err.grpcCode,
    message: err.message,
    details: [{ type_url: ERROR_INFO_TYPE_URL, value: info }],
  });
  return Buffer.from(t.status.encode(st).finish());
}

export interface DecodedStatus {
  code: number;
  message: string;
  /** The first ErrorInfo among the details, if any. */
  errorInfo?: { reason: string; domain: string; metadata: Record<string, string> };
}

/** Client side: decode `grpc-status-details-bin`. Throws on bytes that are not a Status. */
export function decodeStatusDetails(bytes: Uint8Array): DecodedStatus {
  const t = loadRpcTypes();
  const st = t.status.toObject(t.status.decode(bytes), { defaults: true }) as {
    code: number;
    message: string;
    details: { type_url: string; value: Uint8Array }[];
  };
  const out: DecodedStatus = { code: st.code, message: st.message };
  for (const d of st.details) {
    if (d.type_url === ERROR_INFO_TYPE_URL) {
      const info = t.errorInfo.toObject(t.errorInfo.decode(d.value), { defaults: true }) as {
        reason: string;
        domain: string;
        metadata: Record<string, string>;
      };
      out.errorInfo = { reason: info.reason, domain: info.domain, metadata: { ...info.metadata } };
      break;
    }
  }
  return out;
}

/**
 * A grpc-js ServiceError for a server handler's callback (or `call.emit('error')`):
 * `code`, `details` = the safe message, and metadata with `grpc-status-details-bin`.
 * Non-registry errors become INTERNAL without their message.
 */
export function toGrpcError(err: unknown, opHint?: HsmOpHint): ServiceError & { hyok: HyokError } {
  const h = toHyokError(err, opHint);
  const metadata = new Metadata();
  metadata.set('grpc-status-details-bin', encodeStatusDetails(h));
  const e = new Error(h.message) as ServiceError & { hyok: HyokError };
  e.code = h.grpcCode;
  e.details = h.message;
  e.metadata = metadata;
  // Non-enumerable: the original error stays reachable for the operational log without
  // being serialized by anything that walks the object.
  Object.defineProperty(e, 'hyok', { value: h, enumerable: false });
  return e;
}

/** The per-item status of batch and stream responses (hyok.v1.ItemStatus). */
export interface ItemStatus {
  code: number;
  reason: string;
  message: string;
  metadata: Record<string, string>;
}

export const OK_ITEM_STATUS: Readonly<ItemStatus> = Object.freeze({
  code: 0,
  reason: '',
  message: '',
  metadata: {},
});

export function toItemStatus(err: unknown, opHint?: HsmOpHint): ItemStatus {
  const h = toHyokError(err, opHint);
  return { code: h.grpcCode, reason: h.code, message: h.message, metadata: { ...h.metadata } };
}

// --- documentation ----------------------------------------------------------------------

const GRPC_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(status)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => [v as number, k]),
);

/** The README error table, generated from the registry. */
export function errorsTableMarkdown(): string {
  const lines = ['| Code | gRPC status | HTTP | Retriable | Message |', '| --- | --- | --- | --- | --- |'];
  for (const code of ERROR_CODES) {
    const s: ErrorSpec = ERRORS[code];
    const msg = s.message.replace(/\|/g, '\\|');
    lines.push(
      `| \`${code}\` | ${GRPC_NAMES[s.grpc]} (${s.grpc}) | ${s.http} | ${s.retriable ? 'yes' : 'no'} | ${msg} |`,
    );
  }
  return lines.join('\n') + '\n';
}
