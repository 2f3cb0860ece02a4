// Label values for hyokd's metrics, each drawn from a bounded set.
//
// A Prometheus series exists per distinct label combination, so a label fed from caller
// input (an identity, a key name, a free-form method string) would let any caller grow
// the server's memory and the monitoring system's index without limit, and could carry
// something that must not leave the process. Every label value therefore passes through
// one of the functions here, and each maps anything outside its known set to a fixed
// fallback. None of them ever returns caller text that is not on an allowlist or does
// not match a strict shape under a hard cap on distinct values.

import { status as grpcStatus } from '@grpc/grpc-js';
import { ERROR_CODES } from '../errors.js';
import type { IdentityClass } from '../server/observer.js';
import type { HsmState, OpName } from '../hsm/types.js';
import { KEY_STATES, type KeyState } from '../store/types.js';

/** The value that stands for "not in the known set". */
export const OTHER = 'other';

export const IDENTITY_CLASSES: readonly IdentityClass[] = ['client', 'admin', 'unknown', 'anonymous'];

/** gRPC status names (`OK`, `INVALID_ARGUMENT`, …): the 17 codes of google.rpc.Code. */
export const GRPC_STATUS_NAMES: readonly string[] = Object.keys(grpcStatus).filter((k) =>
  Number.isNaN(Number(k)),
);

export const HSM_STATES: readonly HsmState[] = ['ready', 'recovering', 'closed'];

export const HSM_OP_NAMES: readonly OpName[] = [
  'random',
  'generateKey',
  'generateKeyPair',
  'encrypt',
  'decrypt',
  'rsaEncrypt',
  'rsaDecrypt',
  'wrapKey',
  'unwrapKey',
  'sign',
  'verify',
  'find',
  'getAttributes',
  'setAttributes',
  'copyObject',
  'destroy',
];

export { KEY_STATES };
export type { KeyState };

const identitySet = new Set<string>(IDENTITY_CLASSES);
const statusSet = new Set<string>(GRPC_STATUS_NAMES);
const reasonSet = new Set<string>(ERROR_CODES);
const opSet = new Set<string>(HSM_OP_NAMES);

/** Safe: one of four fixed classes; anything else is `unknown`. Never the identity. */
export function identityClassLabel(v: unknown): IdentityClass {
  return typeof v === 'string' && identitySet.has(v) ? (v as IdentityClass) : 'unknown';
}

/** Safe: one of the 17 gRPC status names; anything else is `UNKNOWN`. */
export function statusLabel(v: unknown): string {
  return typeof v === 'string' && statusSet.has(v) ? v : 'UNKNOWN';
}

/**
 * Safe: a code of hyokd's error registry (src/errors.ts), '' for success; anything else
 * (a raw message, an HSM return value) is `other`, so no error text can become a label.
 */
export function reasonLabel(v: unknown): string {
  if (v === '' || v === undefined || v === null) return '';
  return typeof v === 'string' && reasonSet.has(v) ? v : OTHER;
}

/** Safe: one of the HsmBackend op names. */
export function hsmOpLabel(v: string): string {
  return opSet.has(v) ? v : OTHER;
}

/**
 * A set of label values that admits names of a strict shape until it holds `cap` of
 * them; later newcomers become `other`. Used where the set is finite in practice but not
 * known here (PKCS#11 return-value names, RPC method names when no allowlist is given).
 * Admission is permanent, so the same input always maps to the same value.
 */
export class BoundedLabelSet {
  readonly #seen = new Set<string>();
  readonly #shape: RegExp;
  readonly #cap: number;

  constructor(shape: RegExp, cap: number) {
    this.#shape = shape;
    this.#cap = cap;
  }

  label(v: unknown): string {
    if (typeof v !== 'string' || !this.#shape.test(v)) return OTHER;
    if (this.#seen.has(v)) return v;
    if (this.#seen.size >= this.#cap) return OTHER;
    this.#seen.add(v);
    return v;
  }

  get size(): number {
    return this.#seen.size;
  }
}

/** PKCS#11 return-value names and hyokd's own HSM codes: `CKR_PIN_INCORRECT`, `HYOKD_QUEUE_FULL`. */
export const HSM_ERROR_CODE_SHAPE = /^(?:CKR|HYOKD)_[A-Z0-9_]{1,60}$/;
/** A gRPC service (`hyok.v1.Hyok`) or protocol name (`xks`). */
export const SERVICE_SHAPE = /^[A-Za-z][A-Za-z0-9_.]{0,79}$/;
/** An RPC method name (`Unwrap`). */
export const METHOD_SHAPE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/** The RPC methods of hyokd's services, as in proto/: the default allowlist. */
export const KNOWN_METHODS: Readonly<Record<string, readonly string[]>> = {
  'hyok.v1.Hyok': [
    'GenerateDataKey',
    'Wrap',
    'Unwrap',
    'BatchWrap',
    'BatchUnwrap',
    'UnwrapStream',
    'GetKey',
    'Echo',
  ],
  'hyok.admin.v1.KeyAdmin': [
    'CreateKey',
    'ListKeys',
    'GetKey',
    'RotateKey',
    'SetKeyState',
    'DeleteKey',
    'RecoverKey',
    'PurgeKey',
    'AdoptKey',
    'BackupKey',
    'RestoreKey',
    'CreateImportKey',
    'ImportKey',
    'SetRotationPolicy',
    'SetTags',
    'GetPolicy',
    'SetPolicy',
    'ExplainPolicy',
  ],
};

export interface MethodLabelOptions {
  /**
   * Services and their methods that get their own label values. Calls to a listed
   * service with an unlisted method count as method `other`; unlisted services go to the
   * bounded set below. Default: KNOWN_METHODS.
   */
  methods?: Readonly<Record<string, readonly string[]>>;
  /** Most (service, method) pairs outside the allowlist that get their own values. Default 32. */
  maxExtraMethods?: number;
}

/**
 * Maps (service, method) to label values. Listed pairs are passed through; a listed
 * service keeps its name with method `other` for an unknown method (a client probing
 * random method names cannot add series); other services (a new protocol adapter not
 * yet listed) are admitted by shape up to a cap, then become (`other`, `other`).
 */
export class MethodLabels {
  readonly #allow: Map<string, Set<string>>;
  readonly #extra: BoundedLabelSet;

  constructor(opts: MethodLabelOptions = {}) {
    this.#allow = new Map(Object.entries(opts.methods ?? KNOWN_METHODS).map(([s, ms]) => [s, new Set(ms)]));
    // The extra set holds "service method" pairs, so the cap bounds pairs, not names.
    this.#extra = new BoundedLabelSet(
      /^[A-Za-z][A-Za-z0-9_.]{0,79} [A-Za-z][A-Za-z0-9_]{0,63}$/,
      opts.maxExtraMethods ?? 32,
    );
  }

  label(service: unknown, method: unknown): { service: string; method: string } {
    const s = typeof service === 'string' ? service : '';
    const m = typeof method === 'string' ? method : '';
    const listed = this.#allow.get(s);
    if (listed) return { service: s, method: listed.has(m) ? m : OTHER };
    if (!SERVICE_SHAPE.test(s) || !METHOD_SHAPE.test(m)) return { service: OTHER, method: OTHER };
    const pair = this.#extra.label(`${s} ${m}`);
    return pair === OTHER ? { service: OTHER, method: OTHER } : { service: s, method: m };
  }
}
