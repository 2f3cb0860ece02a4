// The data-plane operations on DEKs, independent of the transport: validation, key
// resolution and the HSM op for one item, and turning the HSM result into a response.
// Used by the gRPC service (unary, batch, stream) and reusable by REST adapters.
import { digestForAudit } from '../audit/index.js';
import {
  decodeEnvelope,
  encodeEnvelope,
  encodeEnvelopeHeader,
  envelopeAad,
  gcmInput,
  MAX_CALLER_AAD_BYTES,
  splitGcmOutput,
  type DecodedEnvelope,
} from '../envelope.js';
import { HyokError } from '../errors.js';
import type { ItemResult, Op } from '../hsm/types.js';
import type { UsableVersion } from '../keys/types.js';
import { parseRecipientKey, rewrapDek, type RewrappedDek, type RewrapSpec } from '../rewrap.js';
import { KEY_NAME_PATTERN } from '../store/types.js';
import type { RequestLimits } from './pipeline.js';

export const DEFAULT_DEK_BYTES = 32;
const DEK_SIZES = new Set([16, 24, 32]);

export function checkKeyName(name: unknown): string {
  if (typeof name !== 'string' || !KEY_NAME_PATTERN.test(name)) throw new HyokError('KEY_NAME_INVALID');
  return name;
}

function bytesOf(value: unknown, field: string): Buffer {
  if (value === undefined || value === null) return EMPTY;
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new HyokError('INVALID_REQUEST', { params: { detail: `${field} must be bytes` } });
}

const EMPTY = Buffer.alloc(0);

export function checkAad(value: unknown, limits: RequestLimits): Buffer {
  const aad = bytesOf(value, 'aad');
  const limit = Math.min(limits.maxAadBytes, MAX_CALLER_AAD_BYTES);
  if (aad.length > limit) throw new HyokError('AAD_SIZE', { params: { length: aad.length, limit } });
  return aad;
}

export function checkDek(value: unknown, limits: RequestLimits): Buffer {
  const dek = bytesOf(value, 'plaintext_dek');
  if (!DEK_SIZES.has(dek.length) || dek.length > limits.maxDekBytes) {
    throw new HyokError('DEK_SIZE', { params: { length: dek.length } });
  }
  return dek;
}

export function checkDekLength(value: unknown, limits: RequestLimits): number {
  const n = value === undefined || value === null || value === 0 ? DEFAULT_DEK_BYTES : Number(value);
  if (!DEK_SIZES.has(n) || n > limits.maxDekBytes) throw new HyokError('DEK_SIZE', { params: { length: n } });
  return n;
}

/** The proto RewrapSpec as loaded (enums as strings), or null/undefined when absent. */
export interface RewrapSpecMessage {
  algorithm?: string;
  recipientPublicKey?: Uint8Array;
}

/** Validates the rewrap spec up front (before the HSM is touched); null when absent. */
export function checkRewrap(value: RewrapSpecMessage | null | undefined): RewrapSpec | null {
  if (value === undefined || value === null) return null;
  const spec: RewrapSpec = {
    algorithm: String(value.algorithm ?? ''),
    recipientPublicKey: bytesOf(value.recipientPublicKey, 'rewrap.recipient_public_key'),
  };
  parseRecipientKey(spec);
  return spec;
}

export interface RewrappedDekMessage {
  algorithm: string;
  wrappedDek: Buffer;
  ephemeralPublicKey: Buffer;
}

function rewrapMessage(r: RewrappedDek): RewrappedDekMessage {
  return { algorithm: r.algorithm, wrappedDek: r.wrappedDek, ephemeralPublicKey: r.ephemeralPublicKey };
}

// --- Unwrap --------------------------------------------------------------------------

export interface UnwrapInput {
  envelope?: Uint8Array;
  aad?: Uint8Array;
  rewrap?: RewrapSpecMessage | null;
}

export interface PreparedUnwrap {
  env: DecodedEnvelope;
  aad: Buffer;
  rewrap: RewrapSpec | null;
  /** For the audit record: a short digest of the envelope; null when nothing is recorded. */
  digest: string | null;
}

/**
 * Parses and bounds an unwrap item. Throws MALFORMED_ENVELOPE, AAD_SIZE, REWRAP_*.
 * `audited`: the call gets an audit record (without one the digest is not computed).
 */
export function prepareUnwrap(item: UnwrapInput, limits: RequestLimits, audited: boolean): PreparedUnwrap {
  const blob = bytesOf(item.envelope, 'envelope');
  if (blob.length === 0) throw new HyokError('MALFORMED_ENVELOPE', { params: { detail: 'empty' } });
  const env = decodeEnvelope(blob);
  const aad = checkAad(item.aad, limits);
  const rewrap = checkRewrap(item.rewrap);
  return { env, aad, rewrap, digest: audited ? digestForAudit(blob) : null };
}

export function unwrapOp(p: PreparedUnwrap, key: UsableVersion): Op {
  return {
    op: 'decrypt',
    key: key.ref,
    iv: p.env.iv,
    ciphertext: gcmInput(p.env),
    aad: envelopeAad(p.env.header, p.aad),
  };
}

export interface UnwrapResponseMessage {
  plaintextDek: Buffer;
  keyName: string;
  keyVersion: number;
  rewrapped: RewrappedDekMessage | null;
}

/** Encrypts the DEK to the caller's public key and zeroes the plaintext. */
export function rewrapAndZero(dek: Buffer, spec: RewrapSpec): RewrappedDekMessage {
  try {
    return rewrapMessage(rewrapDek(dek, spec));
  } finally {
    dek.fill(0);
  }
}

/** The response for a decrypt result; rewraps (and zeroes the plaintext) when asked. */
export function unwrapResponse(p: PreparedUnwrap, plaintext: Buffer): UnwrapResponseMessage {
  if (p.rewrap) {
    return {
      plaintextDek: EMPTY,
      keyName: p.env.keyName,
      keyVersion: p.env.keyVersion,
      rewrapped: rewrapAndZero(plaintext, p.rewrap),
    };
  }
  return { plaintextDek: plaintext, keyName: p.env.keyName, keyVersion: p.env.keyVersion, rewrapped: null };
}

// --- Wrap ----------------------------------------------------------------------------

export interface WrapInput {
  keyName?: string;
  plaintextDek?: Uint8Array;
  aad?: Uint8Array;
}

export interface PreparedWrap {
  keyName: string;
  dek: Buffer;
  aad: Buffer;
}

export function prepareWrap(item: WrapInput, limits: RequestLimits): PreparedWrap {
  return {
    keyName: checkKeyName(item.keyName),
    dek: checkDek(item.plaintextDek, limits),
    aad: checkAad(item.aad, limits),
  };
}

export interface WrapPlan {
  op: Op;
  header: Buffer;
  key: UsableVersion;
}

/** The encrypt op sealing `dek` under `key` with the envelope header bound into the AAD. */
export function wrapOp(dek: Buffer, aad: Buffer, key: UsableVersion): WrapPlan {
  const header = encodeEnvelopeHeader({ keyName: key.keyName, keyVersion: key.version });
  return {
    op: { op: 'encrypt', key: key.ref, plaintext: dek, aad: envelopeAad(header, aad) },
    header,
    key,
  };
}

export interface WrapResponseMessage {
  envelope: Buffer;
  keyName: string;
  keyVersion: number;
}

export function wrapResponse(plan: WrapPlan, out: { iv: Buffer; ciphertext: Buffer }): WrapResponseMessage {
  const { ciphertext, tag } = splitGcmOutput(out.ciphertext);
  const envelope = encodeEnvelope({
    keyName: plan.key.keyName,
    keyVersion: plan.key.version,
    iv: out.iv,
    tag,
    ciphertext,
  });
  return { envelope, keyName: plan.key.keyName, keyVersion: plan.key.version };
}

/** The value of a successful item, or its error thrown. */
export function itemValue<T>(r: ItemResult | undefined): T {
  if (r === undefined) throw new HyokError('INTERNAL', { cause: new Error('missing HSM result') });
  if (!r.ok) throw r.error;
  return r as unknown as T;
}
