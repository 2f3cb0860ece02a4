// Audit signing: the key that signs checkpoints over the chain head.
//
// Signatures are ECDSA P-256 over a SHA-256 digest, in raw form: r||s, 32 bytes each
// (IEEE P1363). That is what PKCS#11 CKM_ECDSA returns, so an HSM signature is stored
// as is. The digest is SHA-256 of a short text "preimage" naming the key and the head;
// verifiers recompute the preimage and use node:crypto's verify('sha256', preimage),
// which checks exactly an ECDSA signature over that digest.

import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';

export interface AuditSigner {
  /** Stable id of the key: `keyIdForSpki(publicKeySpkiDer())`. */
  readonly keyId: string;
  /** The public key, DER SubjectPublicKeyInfo (recorded in the chain in a `key` record). */
  publicKeySpkiDer(): Buffer;
  /** ECDSA P-256 over `digest32` (already SHA-256); returns raw r||s (64 bytes). */
  sign(digest32: Buffer): Promise<Buffer>;
}

export const CHECKPOINT_ALG = 'ECDSA_P256_SHA256_P1363';

/** 16 hex of SHA-256 over the SPKI DER. */
export function keyIdForSpki(spki: Buffer): string {
  return createHash('sha256').update(spki).digest('hex').slice(0, 16);
}

/** The text a checkpoint signs: domain, key, and the head it covers. */
export function checkpointPreimage(keyId: string, headSeq: number, headHash: string): Buffer {
  return Buffer.from(`hyokd-audit-checkpoint-v1\n${keyId}\n${headSeq}\n${headHash}`, 'utf8');
}

export function checkpointDigest(keyId: string, headSeq: number, headHash: string): Buffer {
  return createHash('sha256')
    .update(checkpointPreimage(keyId, headSeq, headHash))
    .digest();
}

export function publicKeyFromSpki(spki: Buffer): KeyObject {
  const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('audit signing key must be EC P-256');
  }
  return key;
}

export function verifyCheckpointSignature(
  key: KeyObject,
  keyId: string,
  headSeq: number,
  headHash: string,
  signature: Buffer,
): boolean {
  if (signature.length !== 64) return false;
  try {
    return cryptoVerify(
      'sha256',
      checkpointPreimage(keyId, headSeq, headHash),
      { key, dsaEncoding: 'ieee-p1363' },
      signature,
    );
  } catch {
    return false;
  }
}
