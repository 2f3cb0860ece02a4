// Canonical JSON for the audit chain: object keys sorted by code unit, no whitespace.
// The hash of a record is SHA-256 over this form of the record without its `hash`
// field, so a verifier that parses a line and re-serializes it gets the same bytes no
// matter how the writer's objects were built. Records hold only JSON values (the
// sanitizer guarantees it), so JSON.stringify of each scalar is deterministic.

import { createHash } from 'node:crypto';

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value);
    // undefined, functions and symbols have no JSON form: the sanitizer removes them.
    if (s === undefined) throw new TypeError('audit: value has no JSON form');
    return s;
  }
  if (Array.isArray(value)) return '[' + value.map(canonicalJson).join(',') + ']';
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonicalJson(obj[k])).join(',') + '}';
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The hash a record must carry: SHA-256 over the canonical form without `hash`. */
export function recordHash(record: Record<string, unknown>): string {
  const rest: Record<string, unknown> = { ...record };
  delete rest.hash;
  return sha256Hex(canonicalJson(rest));
}

/** `prev` of the very first record of a chain. */
export const GENESIS_PREV = '0'.repeat(64);
