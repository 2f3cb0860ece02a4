// How hyokd names key versions on the token, and which PKCS#11 usage flags a key's
// operations need.
//
// Every version is its own HSM object (or pair) with a random 16-byte CKA_ID: the store
// maps (name, version) -> CKA_ID, and the backend finds the object by CKA_ID and caches
// the handle. The label is for humans browsing the token (pkcs11-tool -O): it is
// `hyokd:<name>:v<n>`, shortened with a hash suffix when a long name would make it
// unwieldy; nothing ever looks a key up by label.
import { createHash, randomBytes } from 'node:crypto';
import type { KeyClass, KeyRef, KeyUsage } from '../hsm/types.js';
import type { KeyKind, KeyOperation, KeyVersionRecord } from '../store/types.js';

export const CKA_ID_BYTES = 16;
export const MAX_LABEL_LENGTH = 64;

export function newCkaId(): Buffer {
  return randomBytes(CKA_ID_BYTES);
}

export function versionLabel(name: string, version: number): string {
  const full = `hyokd:${name}:v${version}`;
  if (full.length <= MAX_LABEL_LENGTH) return full;
  const suffix = `~${createHash('sha256').update(name).digest('hex').slice(0, 8)}:v${version}`;
  return `hyokd:${name.slice(0, MAX_LABEL_LENGTH - 6 - suffix.length)}${suffix}`;
}

/** The object that does the work: the AES key or the private half. */
export function workClass(kind: KeyKind): KeyClass {
  return kind === 'aes-256' ? 'secret' : 'private';
}

export function workRef(kind: KeyKind, ckaId: string): KeyRef {
  return { id: Buffer.from(ckaId, 'hex'), cls: workClass(kind) };
}

export function publicRef(ckaId: string): KeyRef {
  return { id: Buffer.from(ckaId, 'hex'), cls: 'public' };
}

/** Every ref a version may have on the token (for eviction). */
export function versionRefs(kind: KeyKind, v: Pick<KeyVersionRecord, 'ckaId'>): KeyRef[] {
  return kind === 'aes-256' ? [workRef(kind, v.ckaId)] : [workRef(kind, v.ckaId), publicRef(v.ckaId)];
}

/** Operations each kind can carry out. */
export const KIND_OPERATIONS: Record<KeyKind, readonly KeyOperation[]> = {
  'aes-256': ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey'],
  'rsa-3072': ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey', 'sign', 'verify'],
  'ec-p256': ['sign', 'verify'],
};

/** Defaults when a create request names no operations (as the admin proto says). */
export const DEFAULT_OPERATIONS: Record<KeyKind, KeyOperation[]> = {
  'aes-256': ['wrapKey', 'unwrapKey', 'encrypt', 'decrypt'],
  'rsa-3072': ['decrypt', 'sign', 'verify'],
  'ec-p256': ['sign', 'verify'],
};

/**
 * AES usage. DEK wrapping is AES-256-GCM encrypt/decrypt (src/envelope.ts), so wrapKey
 * needs CKA_ENCRYPT and unwrapKey needs CKA_DECRYPT; CKA_WRAP/CKA_UNWRAP are set only
 * for the key-wrapping operations themselves.
 */
export function secretUsage(ops: readonly KeyOperation[]): KeyUsage {
  const has = (o: KeyOperation) => ops.includes(o);
  return {
    encrypt: has('encrypt') || has('wrapKey'),
    decrypt: has('decrypt') || has('unwrapKey'),
    wrap: has('wrapKey'),
    unwrap: has('unwrapKey'),
  };
}

export function pairUsage(ops: readonly KeyOperation[]): { pub: KeyUsage; priv: KeyUsage } {
  const has = (o: KeyOperation) => ops.includes(o);
  return {
    pub: { encrypt: has('encrypt') || has('wrapKey'), wrap: has('wrapKey'), verify: has('verify') },
    priv: { decrypt: has('decrypt') || has('unwrapKey'), unwrap: has('unwrapKey'), sign: has('sign') },
  };
}

export function keyUsageFor(kind: KeyKind, ops: readonly KeyOperation[]): KeyUsage {
  return kind === 'aes-256' ? secretUsage(ops) : pairUsage(ops).priv;
}
