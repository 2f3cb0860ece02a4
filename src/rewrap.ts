// Rewrap: hand a DEK to a caller encrypted to the caller's own public key, instead of in
// plaintext (hyok.v1 RewrapSpec / RewrappedDek).
//
// Two schemes, both with node:crypto:
//
// - RSA_OAEP_SHA256: RSA-OAEP, SHA-256 for the hash and for MGF1, empty label. The
//   recipient key must be RSA (not RSA-PSS-restricted) with 2048–16384 bits and an odd
//   public exponent ≥ 3. No ephemeral key.
// - ECDH_P256_HKDF_SHA256_AES_KWP: a fresh ephemeral P-256 key pair per call; ECDH with the
//   recipient's static P-256 key gives the shared secret Z (the 32-byte x-coordinate);
//   KEK = HKDF-SHA256(ikm = Z, salt = empty, info = REWRAP_HKDF_INFO, length = 32);
//   wrapped = AES-256 key wrap with padding (RFC 5649) of the DEK under KEK. The response
//   carries the ephemeral public key as SPKI DER (uncompressed point).
//
// `unwrapRewrapped` is the recipient's side, used by tests and the CLI.

import {
  KeyObject,
  constants,
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  privateDecrypt,
  publicEncrypt,
} from 'node:crypto';
import { HyokError } from './errors.js';

export const REWRAP_ALGORITHMS = ['RSA_OAEP_SHA256', 'ECDH_P256_HKDF_SHA256_AES_KWP'] as const;
export type RewrapAlgorithm = (typeof REWRAP_ALGORITHMS)[number];

/** The HKDF `info` of the ECDH scheme (UTF-8 bytes of this string). */
export const REWRAP_HKDF_INFO: Buffer = Buffer.from('hyokd rewrap v1 ECDH-P256 HKDF-SHA256 A256KWP', 'utf8');
export const MIN_RSA_BITS = 2048;
export const MAX_RSA_BITS = 16384;
/** Bound on the SPKI the caller may send. */
export const MAX_RECIPIENT_KEY_BYTES = 4096;
/** RFC 5649 alternative initial value (the 32-bit constant before the length). */
const KWP_AIV = Buffer.from('a65959a6', 'hex');

export interface RewrapSpec {
  /** A RewrapAlgorithm; anything else (including the proto's UNSPECIFIED) is REWRAP_ALGORITHM. */
  algorithm: string;
  /** SubjectPublicKeyInfo, DER. */
  recipientPublicKey: Uint8Array;
}

export interface RewrappedDek {
  algorithm: RewrapAlgorithm;
  wrappedDek: Buffer;
  /** ECDH: the ephemeral public key, SPKI DER. RSA: empty. */
  ephemeralPublicKey: Buffer;
}

export function isRewrapAlgorithm(a: string): a is RewrapAlgorithm {
  return (REWRAP_ALGORITHMS as readonly string[]).includes(a);
}

/**
 * Parses and checks the recipient key for the algorithm. Throws HyokError:
 * REWRAP_ALGORITHM (unknown algorithm), REWRAP_KEY_INVALID (not an SPKI, oversized, bad
 * RSA exponent), REWRAP_KEY_TYPE (wrong key type or curve), REWRAP_KEY_SIZE (RSA bits).
 */
export function parseRecipientKey(spec: RewrapSpec): { algorithm: RewrapAlgorithm; key: KeyObject } {
  const algorithm = spec.algorithm;
  if (!isRewrapAlgorithm(algorithm)) throw new HyokError('REWRAP_ALGORITHM');
  const der = spec.recipientPublicKey;
  if (!(der instanceof Uint8Array) || der.length === 0 || der.length > MAX_RECIPIENT_KEY_BYTES) {
    throw new HyokError('REWRAP_KEY_INVALID');
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' });
  } catch (e) {
    throw new HyokError('REWRAP_KEY_INVALID', { cause: e });
  }
  const details = key.asymmetricKeyDetails ?? {};
  if (algorithm === 'RSA_OAEP_SHA256') {
    if (key.asymmetricKeyType !== 'rsa') {
      throw new HyokError('REWRAP_KEY_TYPE', {
        params: { detail: `RSA_OAEP_SHA256 needs an RSA key, got ${key.asymmetricKeyType}` },
      });
    }
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS)
      throw new HyokError('REWRAP_KEY_SIZE', { params: { bits } });
    const e = details.publicExponent ?? 0n;
    if (e < 3n || e % 2n === 0n) throw new HyokError('REWRAP_KEY_INVALID');
  } else {
    if (key.asymmetricKeyType !== 'ec') {
      throw new HyokError('REWRAP_KEY_TYPE', {
        params: {
          detail: `ECDH_P256_HKDF_SHA256_AES_KWP needs an EC P-256 key, got ${key.asymmetricKeyType}`,
        },
      });
    }
    if (details.namedCurve !== 'prime256v1') {
      throw new HyokError('REWRAP_KEY_TYPE', {
        params: {
          detail: `ECDH_P256_HKDF_SHA256_AES_KWP needs curve P-256, got ${details.namedCurve ?? 'unknown'}`,
        },
      });
    }
  }
  return { algorithm, key };
}

function deriveKek(sharedSecret: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', sharedSecret, Buffer.alloc(0), REWRAP_HKDF_INFO, 32));
}

function kwpWrap(kek: Buffer, data: Buffer): Buffer {
  const c = createCipheriv('id-aes256-wrap-pad', kek, KWP_AIV);
  return Buffer.concat([c.update(data), c.final()]);
}

function kwpUnwrap(kek: Buffer, data: Buffer): Buffer {
  const d = createDecipheriv('id-aes256-wrap-pad', kek, KWP_AIV);
  return Buffer.concat([d.update(data), d.final()]);
}

/** Encrypts `dek` to the recipient. Validates the key first (see parseRecipientKey). */
export function rewrapDek(dek: Buffer, spec: RewrapSpec): RewrappedDek {
  if (dek.length < 1 || dek.length > 64) throw new HyokError('DEK_SIZE', { params: { length: dek.length } });
  const { algorithm, key } = parseRecipientKey(spec);
  if (algorithm === 'RSA_OAEP_SHA256') {
    const wrappedDek = publicEncrypt(
      { key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      dek,
    );
    return { algorithm, wrappedDek, ephemeralPublicKey: Buffer.alloc(0) };
  }
  const eph = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const z = diffieHellman({ privateKey: eph.privateKey, publicKey: key });
  const kek = deriveKek(z);
  try {
    return {
      algorithm,
      wrappedDek: kwpWrap(kek, dek),
      ephemeralPublicKey: eph.publicKey.export({ format: 'der', type: 'spki' }),
    };
  } finally {
    z.fill(0);
    kek.fill(0);
  }
}

/**
 * The recipient's side: recovers the DEK with the private key matching the recipient
 * public key (a KeyObject, a PEM string, or PKCS#8 DER). Throws HyokError
 * INVALID_CIPHERTEXT when it does not decrypt, REWRAP_ALGORITHM / REWRAP_KEY_* on a bad
 * algorithm, key or ephemeral key.
 */
export function unwrapRewrapped(
  privateKey: KeyObject | string | Buffer,
  r: { algorithm: string; wrappedDek: Uint8Array; ephemeralPublicKey?: Uint8Array },
): Buffer {
  const priv =
    privateKey instanceof KeyObject
      ? privateKey
      : typeof privateKey === 'string'
        ? createPrivateKey(privateKey)
        : createPrivateKey({ key: privateKey, format: 'der', type: 'pkcs8' });
  if (!isRewrapAlgorithm(r.algorithm)) throw new HyokError('REWRAP_ALGORITHM');
  const wrapped = Buffer.from(r.wrappedDek);
  if (r.algorithm === 'RSA_OAEP_SHA256') {
    try {
      return privateDecrypt(
        { key: priv, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
        wrapped,
      );
    } catch (e) {
      throw new HyokError('INVALID_CIPHERTEXT', { cause: e });
    }
  }
  const { key: eph } = parseRecipientKey({
    algorithm: r.algorithm,
    recipientPublicKey: r.ephemeralPublicKey ?? Buffer.alloc(0),
  });
  const z = diffieHellman({ privateKey: priv, publicKey: eph });
  const kek = deriveKek(z);
  try {
    return kwpUnwrap(kek, wrapped);
  } catch (e) {
    throw new HyokError('INVALID_CIPHERTEXT', { cause: e });
  } finally {
    z.fill(0);
    kek.fill(0);
  }
}
