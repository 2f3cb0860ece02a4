// The production audit signer: an EC P-256 key pair generated on the token, private
// half sensitive and never extractable, signing checkpoint digests with CKM_ECDSA.
// CKM_ECDSA signs the digest it is given and returns raw r||s, which is the format the
// chain stores; nothing is converted.

import type { HsmBackend, KeyRef } from '../hsm/types.js';
import { keyIdForSpki, publicKeyFromSpki, type AuditSigner } from './signer.js';

// DER prefix of a P-256 SubjectPublicKeyInfo up to the BIT STRING contents:
// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) ... }
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');

/** SPKI DER from CKA_EC_POINT: a DER OCTET STRING around the uncompressed point (or, on some tokens, the bare point). */
export function spkiFromEcPoint(ecPoint: Buffer): Buffer {
  let point = ecPoint;
  if (point.length === 67 && point[0] === 0x04 && point[1] === 0x41) point = point.subarray(2);
  if (point.length !== 65 || point[0] !== 0x04) {
    throw new Error('audit signing key: CKA_EC_POINT is not an uncompressed P-256 point');
  }
  const spki = Buffer.concat([P256_SPKI_PREFIX, point]);
  publicKeyFromSpki(spki); // throws when the point is not on the curve
  return spki;
}

export interface HsmSignerKeySpec {
  /** CKA_ID of both halves. */
  id: Buffer;
  label: string;
}

export class HsmAuditSigner implements AuditSigner {
  readonly keyId: string;
  readonly #backend: HsmBackend;
  readonly #privateRef: KeyRef;
  readonly #spki: Buffer;

  private constructor(backend: HsmBackend, id: Buffer, spki: Buffer) {
    this.#backend = backend;
    this.#privateRef = { id: Buffer.from(id), cls: 'private' };
    this.#spki = spki;
    this.keyId = keyIdForSpki(spki);
  }

  /** Generate a new audit key pair on the token (token objects, private half sensitive, non-extractable). */
  static async generate(backend: HsmBackend, spec: HsmSignerKeySpec): Promise<HsmAuditSigner> {
    const { publicHandle } = await backend.run({
      op: 'generateKeyPair',
      kind: 'ec',
      curve: 'P-256',
      publicSpec: { id: spec.id, label: spec.label, token: true, usage: { verify: true } },
      privateSpec: { id: spec.id, label: spec.label, token: true, extractable: false, usage: { sign: true } },
    });
    return HsmAuditSigner.#fromPublicHandle(backend, spec.id, publicHandle);
  }

  /** Use an existing audit key pair found by CKA_ID. */
  static async load(backend: HsmBackend, id: Buffer): Promise<HsmAuditSigner> {
    const [pub, priv] = await Promise.all([
      backend.run({ op: 'find', cls: 'public', id }),
      backend.run({ op: 'find', cls: 'private', id }),
    ]);
    if (pub.handles.length !== 1 || priv.handles.length !== 1) {
      throw new Error('audit signing key: expected exactly one public and one private object with this id');
    }
    const { attrs } = await backend.run({ op: 'getAttributes', handle: priv.handles[0]! });
    if (attrs.keyType !== 'ec' || !attrs.sensitive || attrs.extractable || !attrs.usage.sign) {
      throw new Error('audit signing key: private key must be EC, sensitive, non-extractable, sign-only');
    }
    return HsmAuditSigner.#fromPublicHandle(backend, id, pub.handles[0]!);
  }

  static async #fromPublicHandle(backend: HsmBackend, id: Buffer, handle: number): Promise<HsmAuditSigner> {
    const { attrs } = await backend.run({ op: 'getAttributes', handle });
    if (!attrs.ecPoint) throw new Error('audit signing key: public key has no CKA_EC_POINT');
    return new HsmAuditSigner(backend, id, spkiFromEcPoint(attrs.ecPoint));
  }

  publicKeySpkiDer(): Buffer {
    return Buffer.from(this.#spki);
  }

  async sign(digest32: Buffer): Promise<Buffer> {
    if (digest32.length !== 32) throw new Error('audit signer expects a 32-byte digest');
    const { signature } = await this.#backend.run({
      op: 'sign',
      key: this.#privateRef,
      mechanism: 'ECDSA',
      data: digest32,
    });
    if (signature.length !== 64)
      throw new Error('audit signing key: CKM_ECDSA returned a signature that is not 64 bytes');
    return signature;
  }
}
