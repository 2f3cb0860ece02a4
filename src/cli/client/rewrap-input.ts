// The --rewrap-to / --rewrap-alg / --rewrap-private-key flags: ask the server to return
// the DEK encrypted to a public key instead of in plaintext, and optionally open it here
// with the matching private key (src/rewrap.ts unwrapRewrapped), so the plaintext DEK
// never crosses the wire.

import { createPublicKey, createPrivateKey, type KeyObject } from 'node:crypto';
import { HyokError } from '../../errors.js';
import { REWRAP_ALGORITHMS, isRewrapAlgorithm, unwrapRewrapped, type RewrapAlgorithm } from '../../rewrap.js';
import { UsageError } from './cli-io.js';
import { readInputFile } from './parse-input.js';

export interface RewrapFlags {
  rewrapTo?: string;
  rewrapAlg?: string;
  rewrapPrivateKey?: string;
}

export interface RewrapRequest {
  /** The RewrapSpec message. */
  spec: { algorithm: RewrapAlgorithm; recipientPublicKey: Buffer };
  /** Present when the CLI should open the result itself. */
  privateKey?: KeyObject;
}

const ALIASES: Record<string, RewrapAlgorithm> = {
  'rsa-oaep-sha256': 'RSA_OAEP_SHA256',
  rsa: 'RSA_OAEP_SHA256',
  'ecdh-p256': 'ECDH_P256_HKDF_SHA256_AES_KWP',
  ecdh: 'ECDH_P256_HKDF_SHA256_AES_KWP',
};

export const REWRAP_ALG_HELP = `${REWRAP_ALGORITHMS.join(' | ')} (or rsa-oaep-sha256, ecdh-p256); default from the key type`;

const MAX_KEY_FILE = 64 * 1024;

function parseAlg(value: string): RewrapAlgorithm {
  if (isRewrapAlgorithm(value)) return value;
  const a = ALIASES[value.toLowerCase()];
  if (a) return a;
  throw new UsageError(
    `--rewrap-alg: unknown algorithm ${JSON.stringify(value.slice(0, 60))}; use ${REWRAP_ALG_HELP}`,
  );
}

async function loadPublicKey(path: string): Promise<KeyObject> {
  const buf = await readInputFile(path, '--rewrap-to', MAX_KEY_FILE);
  const text = buf.toString('latin1');
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw new UsageError(
      '--rewrap-to: the file holds a private key; give the public key (or use --rewrap-private-key)',
    );
  }
  try {
    if (text.includes('-----BEGIN ')) return createPublicKey(text);
    return createPublicKey({ key: buf, format: 'der', type: 'spki' });
  } catch {
    throw new UsageError(`--rewrap-to: ${path} is not a public key (PEM or SPKI DER) or certificate`);
  }
}

async function loadPrivateKey(path: string): Promise<KeyObject> {
  const buf = await readInputFile(path, '--rewrap-private-key', MAX_KEY_FILE);
  try {
    const text = buf.toString('latin1');
    if (text.includes('-----BEGIN ')) return createPrivateKey(text);
    return createPrivateKey({ key: buf, format: 'der', type: 'pkcs8' });
  } catch {
    // Never include the parser's message: it could quote the key.
    throw new UsageError(`--rewrap-private-key: ${path} is not an unencrypted PEM or PKCS#8 DER private key`);
  }
}

function algFor(key: KeyObject): RewrapAlgorithm {
  if (key.asymmetricKeyType === 'rsa') return 'RSA_OAEP_SHA256';
  if (key.asymmetricKeyType === 'ec') return 'ECDH_P256_HKDF_SHA256_AES_KWP';
  throw new UsageError(
    `--rewrap-to: a ${key.asymmetricKeyType} key cannot be used; give an RSA or EC P-256 key`,
  );
}

/** The RewrapSpec for the flags, or undefined when none is given. */
export async function rewrapFromFlags(flags: RewrapFlags): Promise<RewrapRequest | undefined> {
  if (flags.rewrapTo === undefined && flags.rewrapPrivateKey === undefined) {
    if (flags.rewrapAlg !== undefined)
      throw new UsageError('--rewrap-alg needs --rewrap-to or --rewrap-private-key');
    return undefined;
  }
  const privateKey =
    flags.rewrapPrivateKey !== undefined ? await loadPrivateKey(flags.rewrapPrivateKey) : undefined;
  const publicKey =
    flags.rewrapTo !== undefined ? await loadPublicKey(flags.rewrapTo) : createPublicKey(privateKey!);
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  if (privateKey) {
    const derived = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
    if (!derived.equals(spki)) {
      throw new UsageError('--rewrap-private-key does not match the public key of --rewrap-to');
    }
  }
  const algorithm = flags.rewrapAlg !== undefined ? parseAlg(flags.rewrapAlg) : algFor(publicKey);
  const out: RewrapRequest = { spec: { algorithm, recipientPublicKey: spki } };
  if (privateKey) out.privateKey = privateKey;
  return out;
}

export interface RewrappedDekMessage {
  algorithm: string;
  wrappedDek: Buffer;
  ephemeralPublicKey: Buffer;
}

/** Opens a server's RewrappedDek with the local private key; a failure is INVALID_CIPHERTEXT. */
export function openRewrapped(privateKey: KeyObject, r: RewrappedDekMessage): Buffer {
  try {
    return unwrapRewrapped(privateKey, r);
  } catch (e) {
    const code = e instanceof HyokError ? e.code : 'INVALID_CIPHERTEXT';
    throw new Error(`the rewrapped DEK could not be opened with --rewrap-private-key (${code})`);
  }
}

export function rewrappedJson(r: RewrappedDekMessage): Record<string, string> {
  return {
    algorithm: r.algorithm,
    wrappedDek: Buffer.from(r.wrappedDek).toString('base64'),
    ephemeralPublicKey: Buffer.from(r.ephemeralPublicKey ?? []).toString('base64'),
  };
}
