// The envelope: hyokd's self-describing wrapped-DEK format.
//
// A caller stores the envelope beside its data and hands it back unchanged, possibly years
// later and after rotations; it names the key and version that sealed it. All integers are
// big-endian. Offsets with N are after the key name (N = its length in bytes).
//
// | Offset  | Size | Field              | Value                                               |
// | ------- | ---- | ------------------ | --------------------------------------------------- |
// | 0       | 4    | magic              | `48 59 4B 44` ("HYKD")                              |
// | 4       | 1    | format version     | `01`                                                |
// | 5       | 1    | algorithm id       | `01` = AES-256-GCM, 96-bit IV, 128-bit tag          |
// | 6       | 1    | key name length N  | 1–128                                               |
// | 7       | N    | key name           | UTF-8 (well-formed)                                 |
// | 7+N     | 4    | key version        | u32, ≥ 1                                            |
// | 11+N    | 12   | IV                 | GCM nonce, drawn by the HSM                         |
// | 23+N    | 16   | tag                | GCM authentication tag                              |
// | 39+N    | 2    | ciphertext length L| u16, 1–1024                                         |
// | 41+N    | L    | ciphertext         | the encrypted DEK                                   |
//
// Total: 41 + N + L bytes; nothing may follow the ciphertext.
//
// The header is bytes [0, 11+N): magic through key version. It is bound into the GCM AAD
// together with the caller's AAD, unambiguously:
//
//     AAD = u32(len(header)) || header || caller_aad
//
// so an envelope cannot be relabelled to another key, version, algorithm or format, nor
// opened with another caller AAD. IV and tag are GCM inputs/outputs already; the
// ciphertext length is implied by the ciphertext.

import { HyokError } from './errors.js';

export const ENVELOPE_MAGIC: Buffer = Buffer.from('HYKD', 'ascii');
export const ENVELOPE_FORMAT_VERSION = 1;
export const ALG_AES_256_GCM = 1;
export const MAX_KEY_NAME_BYTES = 128;
export const MAX_CIPHERTEXT_BYTES = 1024;
export const IV_BYTES = 12;
export const TAG_BYTES = 16;
/** Upper bound of the caller's AAD accepted by `envelopeAad` (AAD_SIZE above it). */
export const MAX_CALLER_AAD_BYTES = 8192;
/** The largest well-formed envelope. */
export const MAX_ENVELOPE_BYTES = 41 + MAX_KEY_NAME_BYTES + MAX_CIPHERTEXT_BYTES;
const MAX_U32 = 0xffffffff;

export type EnvelopeAlgorithm = 'AES-256-GCM';

/** The fields the header binds. */
export interface EnvelopeHeaderFields {
  keyName: string;
  keyVersion: number;
  /** Default AES-256-GCM (the only one today). */
  algorithm?: EnvelopeAlgorithm;
}

export interface Envelope {
  formatVersion: 1;
  algorithm: EnvelopeAlgorithm;
  keyName: string;
  keyVersion: number;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

export interface DecodedEnvelope extends Envelope {
  /** The exact header bytes, for `envelopeAad`. */
  header: Buffer;
}

function malformed(detail: string): HyokError {
  return new HyokError('MALFORMED_ENVELOPE', { params: { detail } });
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The canonical header bytes for a key name and version. Throws MALFORMED_ENVELOPE on bad fields. */
export function encodeEnvelopeHeader(fields: EnvelopeHeaderFields): Buffer {
  if ((fields.algorithm ?? 'AES-256-GCM') !== 'AES-256-GCM') throw malformed('unknown algorithm');
  if (typeof fields.keyName !== 'string') throw malformed('key name must be a string');
  const name = Buffer.from(fields.keyName, 'utf8');
  if (name.length < 1 || name.length > MAX_KEY_NAME_BYTES) {
    throw malformed(`key name must be 1-${MAX_KEY_NAME_BYTES} bytes of UTF-8`);
  }
  if (name.toString('utf8') !== fields.keyName) throw malformed('key name is not well-formed Unicode');
  if (!Number.isInteger(fields.keyVersion) || fields.keyVersion < 1 || fields.keyVersion > MAX_U32) {
    throw malformed('key version must be an integer from 1 to 4294967295');
  }
  const out = Buffer.alloc(11 + name.length);
  ENVELOPE_MAGIC.copy(out, 0);
  out[4] = ENVELOPE_FORMAT_VERSION;
  out[5] = ALG_AES_256_GCM;
  out[6] = name.length;
  name.copy(out, 7);
  out.writeUInt32BE(fields.keyVersion, 7 + name.length);
  return out;
}

/** Serializes an envelope. Throws MALFORMED_ENVELOPE on out-of-range fields. */
export function encodeEnvelope(
  env: Omit<Envelope, 'formatVersion' | 'algorithm'> & Partial<Envelope>,
): Buffer {
  const header = encodeEnvelopeHeader(env);
  if (!Buffer.isBuffer(env.iv) || env.iv.length !== IV_BYTES) throw malformed(`IV must be ${IV_BYTES} bytes`);
  if (!Buffer.isBuffer(env.tag) || env.tag.length !== TAG_BYTES)
    throw malformed(`tag must be ${TAG_BYTES} bytes`);
  if (
    !Buffer.isBuffer(env.ciphertext) ||
    env.ciphertext.length < 1 ||
    env.ciphertext.length > MAX_CIPHERTEXT_BYTES
  ) {
    throw malformed(`ciphertext must be 1-${MAX_CIPHERTEXT_BYTES} bytes`);
  }
  const len = Buffer.alloc(2);
  len.writeUInt16BE(env.ciphertext.length, 0);
  return Buffer.concat([header, env.iv, env.tag, len, env.ciphertext]);
}

/**
 * Parses an envelope strictly. Anything malformed, truncated, oversized, of an unknown
 * version or algorithm, or followed by trailing bytes throws HyokError MALFORMED_ENVELOPE
 * whose message says what is wrong (never echoing the bytes).
 *
 * `iv`, `tag`, `ciphertext` and `header` are views into `input`, not copies: nothing
 * here writes to them, and the HSM layer copies what it needs. (Four copies per unwrap
 * were a good part of BatchUnwrap's garbage.) Copy them before changing `input`.
 */
export function decodeEnvelope(input: Uint8Array): DecodedEnvelope {
  if (!(input instanceof Uint8Array)) throw malformed('not bytes');
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (buf.length > MAX_ENVELOPE_BYTES) throw malformed(`longer than ${MAX_ENVELOPE_BYTES} bytes`);
  if (buf.length < 7) throw malformed('truncated before the key name');
  if (!buf.subarray(0, 4).equals(ENVELOPE_MAGIC)) throw malformed('not a hyokd envelope (bad magic)');
  if (buf[4] !== ENVELOPE_FORMAT_VERSION) throw malformed(`unsupported format version ${buf[4]}`);
  if (buf[5] !== ALG_AES_256_GCM) throw malformed(`unknown algorithm id ${buf[5]}`);
  const n = buf[6]!;
  if (n < 1 || n > MAX_KEY_NAME_BYTES)
    throw malformed(`key name length ${n} is outside 1-${MAX_KEY_NAME_BYTES}`);
  if (buf.length < 7 + n) throw malformed('truncated key name');
  let keyName: string;
  try {
    keyName = utf8.decode(buf.subarray(7, 7 + n));
  } catch {
    throw malformed('key name is not valid UTF-8');
  }
  let off = 7 + n;
  if (buf.length < off + 4) throw malformed('truncated key version');
  const keyVersion = buf.readUInt32BE(off);
  if (keyVersion < 1) throw malformed('key version 0 is invalid');
  off += 4;
  const headerEnd = off;
  if (buf.length < off + IV_BYTES) throw malformed('truncated IV');
  const iv = buf.subarray(off, off + IV_BYTES);
  off += IV_BYTES;
  if (buf.length < off + TAG_BYTES) throw malformed('truncated tag');
  const tag = buf.subarray(off, off + TAG_BYTES);
  off += TAG_BYTES;
  if (buf.length < off + 2) throw malformed('truncated ciphertext length');
  const l = buf.readUInt16BE(off);
  off += 2;
  if (l < 1 || l > MAX_CIPHERTEXT_BYTES)
    throw malformed(`ciphertext length ${l} is outside 1-${MAX_CIPHERTEXT_BYTES}`);
  if (buf.length < off + l) throw malformed(`truncated ciphertext (${buf.length - off} of ${l} bytes)`);
  const ciphertext = buf.subarray(off, off + l);
  off += l;
  if (buf.length !== off) throw malformed(`${buf.length - off} trailing bytes after the ciphertext`);
  return {
    formatVersion: 1,
    algorithm: 'AES-256-GCM',
    keyName,
    keyVersion,
    iv,
    tag,
    ciphertext,
    header: buf.subarray(0, headerEnd),
  };
}

/**
 * The AES-GCM AAD for an envelope: u32(len(header)) || header || callerAad.
 * Throws AAD_SIZE when the caller's AAD exceeds MAX_CALLER_AAD_BYTES.
 */
export function envelopeAad(header: Buffer, callerAad: Uint8Array = Buffer.alloc(0)): Buffer {
  if (callerAad.length > MAX_CALLER_AAD_BYTES) {
    throw new HyokError('AAD_SIZE', { params: { length: callerAad.length, limit: MAX_CALLER_AAD_BYTES } });
  }
  const out = Buffer.allocUnsafe(4 + header.length + callerAad.length);
  out.writeUInt32BE(header.length, 0);
  out.set(header, 4);
  out.set(callerAad, 4 + header.length);
  return out;
}

/** Splits the HSM's GCM output (ciphertext || 16-byte tag). Throws INTERNAL if too short. */
export function splitGcmOutput(output: Buffer): { ciphertext: Buffer; tag: Buffer } {
  if (output.length <= TAG_BYTES)
    throw new HyokError('INTERNAL', { cause: new Error('GCM output too short') });
  return {
    ciphertext: Buffer.from(output.subarray(0, output.length - TAG_BYTES)),
    tag: Buffer.from(output.subarray(output.length - TAG_BYTES)),
  };
}

/** The HSM decrypt input for an envelope: ciphertext || tag. */
export function gcmInput(env: Pick<Envelope, 'ciphertext' | 'tag'>): Buffer {
  const out = Buffer.allocUnsafe(env.ciphertext.length + env.tag.length);
  out.set(env.ciphertext, 0);
  out.set(env.tag, env.ciphertext.length);
  return out;
}
