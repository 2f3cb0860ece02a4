// SubjectPublicKeyInfo DER from the public attributes the HSM reports: RSA modulus and
// exponent, or the EC point (CKA_EC_POINT, a DER OCTET STRING around the uncompressed
// point). node:crypto builds the DER from a JWK, so no ASN.1 is written by hand.
import { createPublicKey } from 'node:crypto';
import type { ObjectAttributes } from '../hsm/types.js';

function stripLeadingZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

/** The raw uncompressed point (0x04 || X || Y) from CKA_EC_POINT, DER-wrapped or not. */
export function rawEcPoint(ecPoint: Buffer): Buffer {
  if (ecPoint.length === 65 && ecPoint[0] === 0x04) return ecPoint;
  if (ecPoint[0] === 0x04 && ecPoint[1] === ecPoint.length - 2 && ecPoint[2] === 0x04) {
    return ecPoint.subarray(2);
  }
  throw new Error('unexpected CKA_EC_POINT encoding');
}

export function spkiFromAttributes(attrs: ObjectAttributes): Buffer {
  if (attrs.keyType === 'rsa' && attrs.modulus && attrs.publicExponent) {
    return createPublicKey({
      key: {
        kty: 'RSA',
        n: stripLeadingZeros(attrs.modulus).toString('base64url'),
        e: stripLeadingZeros(attrs.publicExponent).toString('base64url'),
      },
      format: 'jwk',
    }).export({ type: 'spki', format: 'der' });
  }
  if (attrs.keyType === 'ec' && attrs.ecPoint) {
    const p = rawEcPoint(attrs.ecPoint);
    if (p.length !== 65) throw new Error('only P-256 points are supported');
    return createPublicKey({
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: p.subarray(1, 33).toString('base64url'),
        y: p.subarray(33, 65).toString('base64url'),
      },
      format: 'jwk',
    }).export({ type: 'spki', format: 'der' });
  }
  throw new Error(`no public key attributes for a ${attrs.keyType} object`);
}
