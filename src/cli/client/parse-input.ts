// Checking command-line input before anything is sent. Every error names the flag and
// says what is wrong; none echoes a value that could be secret (DEKs, key material).

import { readFile, stat } from 'node:fs/promises';
import { UsageError } from './cli-io.js';

/** Key names (admin.proto): 1–128 of [A-Za-z0-9._-], starting with a letter or digit. */
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function parseKeyName(value: string, flag: string): string {
  if (!KEY_NAME.test(value)) {
    throw new UsageError(
      `${flag}: invalid key name ${JSON.stringify(value.slice(0, 140))}; use 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`,
    );
  }
  return value;
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const B64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/**
 * Strict base64 (standard or URL-safe alphabet, padding optional): no whitespace, no
 * stray characters, no impossible lengths. The value is never echoed.
 */
export function parseBase64(
  value: string,
  flag: string,
  opts: { maxBytes: number; allowEmpty?: boolean },
): Buffer {
  if (value === '') {
    if (opts.allowEmpty) return Buffer.alloc(0);
    throw new UsageError(`${flag}: empty; expected base64`);
  }
  const std = B64.test(value);
  const url = B64URL.test(value);
  const unpadded = value.replace(/=+$/, '');
  const padOk = !value.endsWith('=') || value.length % 4 === 0;
  if ((!std && !url) || unpadded.length % 4 === 1 || !padOk) {
    throw new UsageError(`${flag}: not valid base64`);
  }
  const buf = Buffer.from(unpadded, url && !std ? 'base64url' : 'base64');
  if (buf.length > opts.maxBytes) {
    throw new UsageError(`${flag}: decodes to ${buf.length} bytes; the limit is ${opts.maxBytes}`);
  }
  return buf;
}

export function parseIntInRange(value: string, flag: string, min: number, max: number): number {
  if (!/^\d{1,15}$/.test(value))
    throw new UsageError(`${flag}: expected an integer, got ${JSON.stringify(value)}`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`${flag}: must be between ${min} and ${max}, got ${n}`);
  return n;
}

const MAX_CONTEXT_PAIRS = 32;
const MAX_CONTEXT_KEY = 64;
const MAX_CONTEXT_VALUE = 1024;
const CONTEXT_KEY = /^[A-Za-z0-9_.-]+$/;

/**
 * `k=v` pairs (repeatable flag) into a map; duplicate keys are an error. Built through a
 * Map and Object.fromEntries so a key such as `__proto__` is kept as an ordinary entry.
 */
export function parsePairs(pairs: readonly string[], flag: string): Record<string, string> {
  const out = new Map<string, string>();
  if (pairs.length > MAX_CONTEXT_PAIRS) throw new UsageError(`${flag}: at most ${MAX_CONTEXT_PAIRS} pairs`);
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`${flag}: expected key=value, got ${JSON.stringify(p.slice(0, 80))}`);
    const k = p.slice(0, eq);
    const v = p.slice(eq + 1);
    if (k.length > MAX_CONTEXT_KEY || !CONTEXT_KEY.test(k)) {
      throw new UsageError(
        `${flag}: key ${JSON.stringify(k.slice(0, 80))} must be 1-${MAX_CONTEXT_KEY} characters of A-Z a-z 0-9 _ . -`,
      );
    }
    if (v.length > MAX_CONTEXT_VALUE) {
      throw new UsageError(`${flag}: value of ${k} is longer than ${MAX_CONTEXT_VALUE}`);
    }
    if (out.has(k)) throw new UsageError(`${flag}: ${k} given twice`);
    out.set(k, v);
  }
  return Object.fromEntries(out);
}

/** Commander accumulator for repeatable flags. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Reads a file the user named, bounded; errors name the flag and the file. */
export async function readInputFile(path: string, flag: string, maxBytes: number): Promise<Buffer> {
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new UsageError(`${flag}: ${path} is not a regular file`);
    size = st.size;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${flag}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? 'EIO'})`);
  }
  if (size > maxBytes) throw new UsageError(`${flag}: ${path} is ${size} bytes; the limit is ${maxBytes}`);
  try {
    return await readFile(path);
  } catch (e) {
    throw new UsageError(`${flag}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? 'EIO'})`);
  }
}

/** AAD from --aad (UTF-8 text) or --aad-base64, not both. Empty when neither is given. */
export function parseAad(opts: { aad?: string; aadBase64?: string }, maxBytes: number): Buffer {
  if (opts.aad !== undefined && opts.aadBase64 !== undefined) {
    throw new UsageError('--aad and --aad-base64: give one, not both');
  }
  if (opts.aadBase64 !== undefined)
    return parseBase64(opts.aadBase64, '--aad-base64', { maxBytes, allowEmpty: true });
  if (opts.aad !== undefined) {
    const buf = Buffer.from(opts.aad, 'utf8');
    if (buf.length > maxBytes) throw new UsageError(`--aad: ${buf.length} bytes; the limit is ${maxBytes}`);
    return buf;
  }
  return Buffer.alloc(0);
}

/** Durations like 90d, 12h, 30m, 45s, or plain seconds. Returns seconds. */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d{1,9})([smhd]?)$/.exec(value);
  if (!m)
    throw new UsageError(
      `${flag}: expected a duration like 90d, 12h, 30m or 45s, got ${JSON.stringify(value)}`,
    );
  const mult = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * mult;
}

/** A timestamp for --since/--until: ISO 8601, or relative like 15m / 2h / 7d (ago). */
export function parseTime(value: string, flag: string, now: Date = new Date()): Date {
  const rel = /^(\d{1,9})([smhd])$/.exec(value);
  if (rel) return new Date(now.getTime() - parseDuration(value, flag) * 1000);
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const t = Date.parse(value);
    if (!Number.isNaN(t)) return new Date(t);
  }
  throw new UsageError(
    `${flag}: expected an ISO 8601 time (2026-01-31T12:00:00Z) or an age like 15m, 2h, 7d; got ${JSON.stringify(value.slice(0, 80))}`,
  );
}
