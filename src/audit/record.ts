// What an audit record may hold, and the sanitizer every event passes through.
//
// The audit log must never hold a PIN, a plaintext DEK or a private key. Types keep
// binary data out at compile time (a Buffer is not an `AuditValue`), and `sanitizeEvent`
// enforces it at run time for callers that cast: binary values are replaced by a marker,
// fields named like secrets are redacted, strings, arrays, objects and depth are capped.
// Ciphertexts, when worth recording at all, go in as `digestForAudit(buf)`.

import { bodySegments, canonicalJson, sha256Hex, type BodySegments } from './canonical.js';
import { AuditCodes, AuditError } from './errors.js';
import { Memo } from '../memo.js';

export type AuditScalar = string | number | boolean | null;
export type AuditValue = AuditScalar | AuditValue[] | { [key: string]: AuditValue };
/** Free-form fields (caller context, job details). Binary values are not accepted. */
export type AuditFields = { [key: string]: AuditValue };

export interface AuditIdentity {
  /** SHA-256 fingerprint of the verified client certificate (hex). */
  fingerprint: string;
  /** The identity hyokd derived from it: URI SAN, DNS SAN or subject CN. */
  san: string;
}

export interface AuditKeyRef {
  name: string;
  version?: number | string;
}

/** One data-plane or admin call, allowed or denied. */
export interface RequestEvent {
  type: 'request';
  plane: 'data' | 'admin';
  identity: AuditIdentity | null;
  op: string;
  key?: AuditKeyRef;
  decision: { allowed: boolean; rule: string };
  /** 'OK' or the error code the caller got. */
  result: { code: string };
  latencyMs: number;
  peer: string;
  requestId: string;
  /** Caller context: upstream request id, reason, … */
  context?: AuditFields;
  /** e.g. `{ ciphertext: digestForAudit(blob) }`. */
  details?: AuditFields;
}

export interface QuorumEvent {
  type: 'quorum';
  action: 'requested' | 'approved' | 'rejected' | 'executed' | 'expired' | 'cancelled';
  quorumId: string;
  op: string;
  key?: AuditKeyRef;
  identity?: AuditIdentity | null;
  approvals?: number;
  required?: number;
  requestId?: string;
  details?: AuditFields;
}

export interface KeyJobEvent {
  type: 'key-job';
  job: string;
  key: AuditKeyRef;
  status: 'started' | 'succeeded' | 'failed';
  code?: string;
  details?: AuditFields;
}

export interface ReloadEvent {
  type: 'reload';
  what: 'config' | 'policy';
  ok: boolean;
  /** Digest of the loaded document (digestForAudit), so two reloads can be compared. */
  digest?: string;
  code?: string;
  details?: AuditFields;
}

/** What callers append. start/stop/resume/checkpoint/key/rotate are the writer's own. */
export type AuditEvent = RequestEvent | QuorumEvent | KeyJobEvent | ReloadEvent;

export const CALLER_TYPES: ReadonlySet<string> = new Set(['request', 'quorum', 'key-job', 'reload']);
export const WRITER_TYPES: ReadonlySet<string> = new Set([
  'start',
  'stop',
  'resume',
  'checkpoint',
  'key',
  'rotate',
]);

/** A record as stored: one JSON object per line. */
export interface AuditRecord {
  seq: number;
  ts: string;
  prev: string;
  hash: string;
  type: string;
  [field: string]: unknown;
}

/** Where a marker says the previous run (or the previous healthy period) ended. */
export interface ChainPoint {
  file: string;
  seq: number;
  hash: string;
}

/** A partial last line left by a crash or a failed write, declared by the next marker. */
export interface TornTail {
  file: string;
  /** Byte offset of the partial line in `file`. */
  offset: number;
  length: number;
  /** SHA-256 (hex) of the partial bytes. */
  sha256: string;
}

/** A short digest for ciphertexts and documents in audit records: 16 hex of SHA-256. */
export function digestForAudit(buf: Buffer | Uint8Array | string): string {
  return sha256Hex(
    typeof buf === 'string' || Buffer.isBuffer(buf)
      ? buf
      : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength),
  ).slice(0, 16);
}

export const LIMITS = {
  maxString: 1024,
  maxKey: 64,
  maxEntries: 64,
  maxDepth: 6,
} as const;

const SECRET_NAME = /(pin|password|passphrase|secret|plaintext|privatekey|private_key|private-key)$/i;
const BINARY = '[binary removed]';
const REDACTED = '[redacted]';
const RESERVED = new Set(['seq', 'ts', 'prev', 'hash']);

function capString(s: string, max: number): string {
  return s.length <= max ? s : s.slice(0, max) + `…(+${s.length - max})`;
}

function isBinary(v: object): boolean {
  return (
    Buffer.isBuffer(v) || ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof SharedArrayBuffer
  );
}

/** Turn anything into a bounded JSON value with no binary data and no secret-named fields. */
export function sanitizeValue(v: unknown, depth = 0): AuditValue | undefined {
  if (v === null) return null;
  switch (typeof v) {
    case 'string':
      return capString(v, LIMITS.maxString);
    case 'number':
      return Number.isFinite(v) ? v : null;
    case 'boolean':
      return v;
    case 'bigint':
      return capString(v.toString(), LIMITS.maxString);
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
      break;
  }
  const obj = v as object;
  if (isBinary(obj)) return BINARY;
  if (depth >= LIMITS.maxDepth) return '[too deep]';
  if (obj instanceof Date) return Number.isNaN(obj.getTime()) ? null : obj.toISOString();
  // Index loops over Object.keys, not entries().slice(): this runs for every audit record
  // on the data plane, and the pair arrays were pure garbage.
  if (Array.isArray(obj)) {
    const out: AuditValue[] = [];
    const n = Math.min(obj.length, LIMITS.maxEntries);
    for (let i = 0; i < n; i++) {
      const s = sanitizeValue(obj[i], depth + 1);
      out.push(s === undefined ? null : s);
    }
    if (obj.length > LIMITS.maxEntries) out.push(`…(+${obj.length - LIMITS.maxEntries})`);
    return out;
  }
  const out: { [k: string]: AuditValue } = {};
  const keys = Object.keys(obj);
  const n = Math.min(keys.length, LIMITS.maxEntries);
  for (let i = 0; i < n; i++) {
    const rawKey = keys[i]!;
    const key = capString(rawKey, LIMITS.maxKey);
    if (SECRET_NAME.test(rawKey)) {
      out[key] = REDACTED;
      continue;
    }
    const s = sanitizeValue((obj as Record<string, unknown>)[rawKey], depth + 1);
    if (s !== undefined) out[key] = s;
  }
  if (keys.length > LIMITS.maxEntries) out['…'] = `+${keys.length - LIMITS.maxEntries} fields`;
  return out;
}

/**
 * The body of a record from a caller's event: a bounded JSON object with a known
 * caller type. Fields the writer owns (seq, ts, prev, hash) are dropped.
 */
export function sanitizeEvent(event: unknown): { type: string } & AuditFields {
  if (event === null || typeof event !== 'object' || Array.isArray(event) || isBinary(event)) {
    throw new AuditError(AuditCodes.BAD_RECORD, 'BAD_RECORD', 'audit event must be an object');
  }
  const type = (event as { type?: unknown }).type;
  if (typeof type !== 'string' || !CALLER_TYPES.has(type)) {
    throw new AuditError(AuditCodes.BAD_RECORD, 'BAD_RECORD', 'audit event has an unknown type');
  }
  const body = sanitizeValue(event) as AuditFields;
  for (const k of RESERVED) delete body[k];
  return { ...body, type };
}

/**
 * The record body of any caller event, serialized around the chain fields: what the
 * writer queues. Same bytes as `bodySegments(sanitizeEvent(event))`; data-plane request
 * events (the hot path, one per call) take a direct route that serializes the fields
 * they are known to hold without building the sanitized copy first.
 */
export function eventSegments(event: unknown): BodySegments {
  return requestSegments(event) ?? bodySegments(sanitizeEvent(event));
}

const REQUEST_FIELDS: ReadonlySet<string> = new Set([
  'type',
  'plane',
  'identity',
  'op',
  'key',
  'decision',
  'result',
  'latencyMs',
  'peer',
  'requestId',
  'context',
  'details',
]);

/** A plain object (not an array, not binary) whose own keys are exactly `keys`, in any order. */
function hasExactly(v: unknown, ...keys: string[]): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || isBinary(v)) return false;
  const own = Object.keys(v);
  if (own.length !== keys.length) return false;
  for (const k of keys) if (!Object.hasOwn(v, k)) return false;
  return true;
}

/** The sanitized canonical JSON of a string. */
function jsonString(s: string): string {
  return JSON.stringify(capString(s, LIMITS.maxString));
}

/** A member of a request body as the sanitizer would leave it, canonical; null when it drops out. */
function generic(v: unknown): string | null {
  const s = sanitizeValue(v, 1);
  return s === undefined ? null : canonicalJson(s);
}

function field(v: unknown, fast: (v: unknown) => string | null): string | null {
  if (v === undefined) return null;
  return fast(v) ?? generic(v);
}

const asString = (v: unknown): string | null => (typeof v === 'string' ? jsonString(v) : null);
// For a finite number, String() and JSON.stringify() agree (both print -0 as 0).
const asNumber = (v: unknown): string | null =>
  typeof v === 'number' ? (Number.isFinite(v) ? String(v) : 'null') : null;
const identityJson = (v: unknown): string | null =>
  v === null
    ? 'null'
    : hasExactly(v, 'fingerprint', 'san') && typeof v.fingerprint === 'string' && typeof v.san === 'string'
      ? `{"fingerprint":${jsonString(v.fingerprint)},"san":${jsonString(v.san)}}`
      : null;
const asKey = (v: unknown): string | null => {
  if (hasExactly(v, 'name', 'version')) {
    const version = typeof v.version === 'string' ? jsonString(v.version) : asNumber(v.version);
    return typeof v.name === 'string' && version !== null
      ? `{"name":${jsonString(v.name)},"version":${version}}`
      : null;
  }
  return hasExactly(v, 'name') && typeof v.name === 'string' ? `{"name":${jsonString(v.name)}}` : null;
};
const decisionJson = (v: unknown): string | null =>
  hasExactly(v, 'allowed', 'rule') && typeof v.allowed === 'boolean' && typeof v.rule === 'string'
    ? `{"allowed":${v.allowed},"rule":${jsonString(v.rule)}}`
    : null;
const resultJson = (v: unknown): string | null =>
  hasExactly(v, 'code') && typeof v.code === 'string' ? `{"code":${jsonString(v.code)}}` : null;

// --- members that repeat ------------------------------------------------------------
// Most of a data-plane record repeats from call to call: the caller's identity, the key
// and its version, the operation, the connection's peer, the plane, the decision and the
// result. Their `"name":json` members are kept once built: building them again took
// about a third of the loop's time per record (bench/RESULTS.md, tenth pass). A cache
// holds a member exactly as computed the first time, so a record's bytes do not depend
// on whether it hit.

/** `"name":json`, or null when the value drops out. */
function member(name: string, json: string | null): string | null {
  return json === null ? null : `"${name}":${json}`;
}

/**
 * Members of frozen values (a caller's identity is made once per certificate; decisions
 * and results the pipeline shares are frozen too), by value: a frozen object's own members
 * cannot change, so its member is computed once. Weak: an identity that leaves the
 * pipeline's cache leaves this too. One map per field.
 */
function frozenMember(
  cache: WeakMap<object, string>,
  name: string,
  v: unknown,
  fast: (v: unknown) => string | null,
): string | null {
  if (v === undefined) return null;
  if (v === null || typeof v !== 'object' || !Object.isFrozen(v)) return member(name, fast(v) ?? generic(v));
  const hit = cache.get(v);
  if (hit !== undefined) return hit;
  const json = fast(v);
  if (json === null) return member(name, generic(v));
  const m = member(name, json)!;
  cache.set(v, m);
  return m;
}
const identityMembers = new WeakMap<object, string>();
const decisionMembers = new WeakMap<object, string>();
const resultMembers = new WeakMap<object, string>();
/** Entries a memo of string-keyed members keeps before it starts again. */
const MEMO_MAX = 1024;
/**
 * Versions remembered per key name. Key names and versions can come from a caller's
 * envelope header, so names x versions must stay small: 1,024 x 16 members at most.
 */
const VERSIONS_MAX = 16;

function stringMember(memo: Memo<string, string>, name: string, v: unknown): string | null {
  if (typeof v !== 'string') return v === undefined ? null : member(name, generic(v));
  return memo.get(v) ?? memo.set(v, member(name, jsonString(v))!);
}
// Members of string values per field; key members by name, then version.
const opMembers = new Memo<string, string>(MEMO_MAX);
const peerMembers = new Memo<string, string>(MEMO_MAX);
const planeMembers = new Memo<string, string>(MEMO_MAX);

/** Key members by name, then version (a number and a string version are different keys). */
const keyMembers = new Memo<string, Memo<unknown, string>>(MEMO_MAX);
function keyMember(v: unknown): string | null {
  if (v === undefined) return null;
  if (!hasExactly(v, 'name', 'version') || typeof v.name !== 'string') return member('key', field(v, asKey));
  const version = v.version;
  let byVersion = keyMembers.get(v.name);
  const hit = byVersion?.get(version);
  if (hit !== undefined) return hit;
  const json = asKey(v);
  if (json === null) return member('key', generic(v));
  // A Map stores `version` by SameValueZero: -0 and 0 share an entry, and both print as 0.
  if (byVersion === undefined) {
    byVersion = new Memo<unknown, string>(VERSIONS_MAX);
    keyMembers.set(v.name, byVersion);
  }
  return byVersion.set(version, member('key', json)!);
}

/** Fraction parts of thousandths, by index: '', '.001' … '.5' … '.999' (no trailing zeros). */
const THOUSANDTHS: readonly string[] = Array.from({ length: 1000 }, (_, f) =>
  f === 0 ? '' : ('.' + String(f).padStart(3, '0')).replace(/0+$/, ''),
);
/** Up to here a whole number of thousandths has ulps far below 0.001. */
const LATENCY_FAST_MAX = 1e9;

/**
 * JSON of a latency, same as String(v): the pipeline records whole thousandths of a
 * millisecond (k / 1000), and for those the shortest decimal that reads back as v is the
 * integer part and the thousandths with trailing zeros dropped; anything else is printed
 * by String().
 */
function latencyJson(v: unknown): string | null {
  if (typeof v === 'number' && v >= 0 && v < LATENCY_FAST_MAX) {
    const k = Math.round(v * 1000);
    if (k / 1000 === v) return String(Math.trunc(v)) + THOUSANDTHS[k % 1000]!;
  }
  return asNumber(v);
}

/**
 * The sanitized canonical JSON of a tree of plain objects, arrays and scalars (caller
 * context, batch item lists), or null when it holds anything the sanitizer would have to
 * rewrite beyond redaction (binary, dates, class instances, long keys, too many entries,
 * too deep, functions): the caller then takes the sanitizer's route.
 */
export function fastJson(v: unknown, depth: number): string | null {
  switch (typeof v) {
    case 'string':
      return jsonString(v);
    case 'number':
      return Number.isFinite(v) ? JSON.stringify(v) : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object':
      break;
    default:
      return null;
  }
  if (v === null) return 'null';
  if (depth >= LIMITS.maxDepth) return null;
  if (Array.isArray(v)) {
    if (v.length > LIMITS.maxEntries) return null;
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      const s = x === undefined ? 'null' : fastJson(x, depth + 1);
      if (s === null) return null;
      out += i === 0 ? s : ',' + s;
    }
    return out + ']';
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) return null;
  const keys = Object.keys(v);
  if (keys.length > LIMITS.maxEntries) return null;
  keys.sort();
  let out = '{';
  for (const k of keys) {
    if (k.length > LIMITS.maxKey) return null;
    let s: string | null;
    if (SECRET_NAME.test(k)) {
      s = JSON.stringify(REDACTED);
    } else {
      const x = (v as Record<string, unknown>)[k];
      if (x === undefined) continue;
      s = fastJson(x, depth + 1);
      if (s === null) return null;
    }
    out += (out.length === 1 ? '' : ',') + JSON.stringify(k) + ':' + s;
  }
  return out + '}';
}
const asTree = (v: unknown): string | null => fastJson(v, 1);

/** Members of a batch item row (pipeline.ts batchAuditEvents), in canonical order. */
const ROW_FIELDS = ['code', 'envelope', 'i', 'key', 'rule', 'version'] as const;
const ROW_PREFIXES = ROW_FIELDS.map((k) => `"${k}":`);

/**
 * The last value serialized for each row field, and its JSON: the rows of one batch mostly
 * repeat their code, key, version and rule, and a string's JSON depends on nothing else.
 */
const rowLastIn: unknown[] = ROW_FIELDS.map(() => undefined);
const rowLastOut: string[] = ROW_FIELDS.map(() => '');

/** One batch item row of string and number members among ROW_FIELDS, or null. */
function asRow(v: unknown): string | null {
  if (v === null || typeof v !== 'object' || Object.getPrototypeOf(v) !== Object.prototype) return null;
  const r = v as Record<string, unknown>;
  let out = '{';
  let n = 0;
  for (let j = 0; j < ROW_FIELDS.length; j++) {
    const x = r[ROW_FIELDS[j]!];
    if (x === undefined) continue;
    let s: string | null;
    if (x === rowLastIn[j]) {
      s = rowLastOut[j]!;
    } else {
      s = typeof x === 'string' ? jsonString(x) : asNumber(x);
      if (s === null) return null;
      rowLastIn[j] = x;
      rowLastOut[j] = s;
    }
    out += n === 0 ? ROW_PREFIXES[j]! + s : ',' + ROW_PREFIXES[j]! + s;
    n++;
  }
  return Object.keys(r).length === n ? out + '}' : null;
}

/** Details of a batch record, `{ items: rows, itemCount }`; anything else as a plain tree. */
const asDetails = (v: unknown): string | null => {
  if (hasExactly(v, 'items', 'itemCount') && Array.isArray(v.items) && v.items.length <= LIMITS.maxEntries) {
    const count = asNumber(v.itemCount);
    if (count === null) return null;
    const rows = v.items as unknown[];
    let out = '[';
    for (let i = 0; i < rows.length; i++) {
      const row = asRow(rows[i]) ?? fastJson(rows[i], 3);
      if (row === null) return null;
      out += i === 0 ? row : ',' + row;
    }
    return `{"itemCount":${count},"items":${out}]}`;
  }
  // A single-call record's details: the envelope's digest.
  if (hasExactly(v, 'envelope') && typeof v.envelope === 'string')
    return `{"envelope":${jsonString(v.envelope)}}`;
  return fastJson(v, 1);
};

/** Appends a member (or nothing, for null) to a segment. */
function add(seg: string, m: string | null): string {
  if (m === null) return seg;
  return seg === '' ? m : seg + ',' + m;
}

/**
 * The segments of a `request` event holding only RequestEvent's fields (null for
 * anything else, which then takes the generic route). Each field of the shape the
 * pipeline builds is serialized directly (the repeating ones from the caches above); a
 * field of any other shape goes through the sanitizer on its own, so the result never
 * differs from the generic route's.
 */
function requestSegments(ev: unknown): BodySegments | null {
  if (ev === null || typeof ev !== 'object' || Array.isArray(ev)) return null;
  const e = ev as Record<string, unknown>;
  if (e.type !== 'request') return null;
  for (const k of Object.keys(e)) if (!REQUEST_FIELDS.has(k)) return null;
  // Canonical order: context, decision, details | identity, key, latencyMs, op, peer,
  // plane | requestId, result | (seq, ts) | type.
  let s0 = add('', member('context', field(e.context, asTree)));
  s0 = add(s0, frozenMember(decisionMembers, 'decision', e.decision, decisionJson));
  s0 = add(s0, member('details', field(e.details, asDetails)));
  let s1 = add('', frozenMember(identityMembers, 'identity', e.identity, identityJson));
  s1 = add(s1, keyMember(e.key));
  s1 = add(s1, member('latencyMs', field(e.latencyMs, latencyJson)));
  s1 = add(s1, stringMember(opMembers, 'op', e.op));
  s1 = add(s1, stringMember(peerMembers, 'peer', e.peer));
  s1 = add(s1, stringMember(planeMembers, 'plane', e.plane));
  let s2 = add('', member('requestId', field(e.requestId, asString)));
  s2 = add(s2, frozenMember(resultMembers, 'result', e.result, resultJson));
  return [s0, s1, s2, '', '"type":"request"'];
}
