// Canonical JSON for the audit chain: object keys sorted by code unit, no whitespace.
// The hash of a record is SHA-256 over this form of the record without its `hash`
// field, so a verifier that parses a line and re-serializes it gets the same bytes no
// matter how the writer's objects were built. Records hold only JSON values (the
// sanitizer guarantees it), so JSON.stringify of each scalar is deterministic.

import * as crypto from 'node:crypto';

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value);
    // undefined, functions and symbols have no JSON form: the sanitizer removes them.
    if (s === undefined) throw new TypeError('audit: value has no JSON form');
    return s;
  }
  // Fast path: a tree of plain JSON values whose keys are already in canonical order
  // serializes the same with the native JSON.stringify (insertion order = key order).
  if (inCanonicalOrder(value, 0)) return JSON.stringify(value);
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
    return out + ']';
  }
  return '{' + members(value as Record<string, unknown>, null).join(',') + '}';
}

const INDEX_LIKE = /^(?:0|[1-9][0-9]*)$/;
const MAX_FAST_DEPTH = 16;

/**
 * True when JSON.stringify(v) is already the canonical form: only plain objects and
 * arrays of strings, finite numbers, booleans and null; every object's keys strictly
 * ascending by code unit (the order JSON.stringify will emit them in), none of them
 * integer-like (those enumerate first, in numeric order), no undefined member.
 */
function inCanonicalOrder(v: object, depth: number): boolean {
  if (depth > MAX_FAST_DEPTH) return false;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (!fastValue(v[i], depth)) return false;
    return true;
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  let prev: string | undefined;
  for (const k in v) {
    if (prev !== undefined && !(prev < k)) return false;
    if (INDEX_LIKE.test(k)) return false;
    if (!fastValue((v as Record<string, unknown>)[k], depth)) return false;
    prev = k;
  }
  return true;
}

function fastValue(x: unknown, depth: number): boolean {
  if (x === null) return true;
  switch (typeof x) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(x);
    case 'object':
      return inCanonicalOrder(x, depth + 1);
    default:
      return false;
  }
}

/** `"key":value` strings of an object's defined members, in key order (code units), skipping `skip`. */
function members(obj: Record<string, unknown>, skip: string | null): string[] {
  const keys = Object.keys(obj).sort();
  const out: string[] = [];
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined || k === skip) continue;
    out.push(JSON.stringify(k) + ':' + canonicalJson(v));
  }
  return out;
}

/**
 * `recordHash(record)` and the canonical line of the record carrying that hash, from
 * one serialization: the members are serialized once, hashed without `hash`, and the
 * `hash` member is spliced in at its sorted place. Same bytes as
 * `canonicalJson({ ...record, hash: recordHash(record) })`.
 */
export function hashAndLine(record: Record<string, unknown>): { hash: string; line: string } {
  const keys = Object.keys(record).sort();
  const parts: string[] = [];
  let at = -1;
  for (const k of keys) {
    if (k === 'hash') continue;
    if (at < 0 && k > 'hash') at = parts.length;
    const v = record[k];
    if (v === undefined) continue;
    parts.push(JSON.stringify(k) + ':' + canonicalJson(v));
  }
  if (at < 0) at = parts.length;
  const hash = sha256Hex('{' + parts.join(',') + '}');
  parts.splice(at, 0, '"hash":' + JSON.stringify(hash));
  return { hash, line: '{' + parts.join(',') + '}' };
}

/** `crypto.hash` (Node 20.12+): one call, no Hash object; about half the cost per record. */
type OneShotHash = (algorithm: string, data: string | Buffer, encoding: 'hex') => string;
const oneShot = (crypto as unknown as { hash?: OneShotHash }).hash;

export function sha256Hex(data: string | Buffer): string {
  return oneShot !== undefined
    ? oneShot('sha256', data, 'hex')
    : crypto.createHash('sha256').update(data).digest('hex');
}

/** The hash a record must carry: SHA-256 over the canonical form without `hash`. */
export function recordHash(record: Record<string, unknown>): string {
  return sha256Hex('{' + members(record, 'hash').join(',') + '}');
}

/** `prev` of the very first record of a chain. */
export const GENESIS_PREV = '0'.repeat(64);

/**
 * A record body serialized ahead of its chain fields: the canonical members of `body`,
 * split where the writer's own fields sort in. Every member sorts before `hash`
 * (segment 0), between `hash` and `prev` (1), `prev` and `seq` (2), `seq` and `ts` (3),
 * or after `ts` (4). The writer serializes a body once, when it is appended, and
 * `chainLine` then only concatenates: no object is rebuilt or re-sorted per record.
 */
export type BodySegments = [string, string, string, string, string];

const CHAIN_FIELDS: ReadonlySet<string> = new Set(['hash', 'prev', 'seq', 'ts']);

/** Which segment a top-level member named `k` (not a chain field) belongs to. */
export function segmentIndex(k: string): 0 | 1 | 2 | 3 | 4 {
  return k < 'hash' ? 0 : k < 'prev' ? 1 : k < 'seq' ? 2 : k < 'ts' ? 3 : 4;
}

/** The segments of a body of JSON values; throws TypeError for a member named like a chain field. */
export function bodySegments(body: Record<string, unknown>): BodySegments {
  const seg: BodySegments = ['', '', '', '', ''];
  for (const k of Object.keys(body).sort()) {
    const v = body[k];
    if (v === undefined) continue;
    if (CHAIN_FIELDS.has(k)) throw new TypeError(`audit: "${k}" is the writer's field`);
    const i = segmentIndex(k);
    const m = JSON.stringify(k) + ':' + canonicalJson(v);
    seg[i] = seg[i] === '' ? m : seg[i] + ',' + m;
  }
  return seg;
}

/**
 * The hash and canonical line of the record `{ ...body, seq, ts, prev }`: the same bytes
 * as `hashAndLine` of that object, from the body's segments. `ts` must be an ISO 8601
 * string and `prev` a hex digest (neither needs JSON escaping).
 */
export function chainLine(
  seg: BodySegments,
  seq: number,
  ts: string,
  prev: string,
): { hash: string; line: string } {
  // The members after `hash`, in order: seg 1, prev, seg 2, seq, seg 3, ts, seg 4.
  let post = (seg[1] === '' ? '"prev":"' : seg[1] + ',"prev":"') + prev + '"';
  if (seg[2] !== '') post += ',' + seg[2];
  post += ',"seq":' + seq;
  if (seg[3] !== '') post += ',' + seg[3];
  post += ',"ts":"' + ts + '"';
  if (seg[4] !== '') post += ',' + seg[4];
  const head = seg[0] === '' ? '{' : '{' + seg[0] + ',';
  const hash = sha256Hex(head + post + '}');
  return { hash, line: head + '"hash":"' + hash + '",' + post + '}' };
}
