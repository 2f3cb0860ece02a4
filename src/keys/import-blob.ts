// The BYOK import blob (`hyokd byok pack`): key material wrapped to an import key so
// that only the HSM holding that import key can unwrap it.
//
//   offset 0   7 bytes  magic "HYOKIMP"
//          7   1 byte   format version (1)
//          8   1 byte   OAEP hash: 1 = SHA-1, 2 = SHA-256
//          9   8 bytes  first 8 bytes of SHA-256(import key SPKI DER): names the
//                       exchange key, so a blob for another one is refused before the HSM
//         17   …        CKM_RSA_AES_KEY_WRAP output: RSA-OAEP(ephemeral AES-256 key)
//                       || AES-KWP (RFC 5649) of the key material
//
// The payload after the header is exactly what PKCS#11's CKM_RSA_AES_KEY_WRAP produces
// and unwraps, so blobs made by other tools in that format can be imported without the
// header (the caller then names the algorithm). SoftHSM2 2.6.1 does RSA-OAEP with SHA-1
// only; the header records the hash so the importer can check the HSM's capabilities
// instead of failing obscurely. The ephemeral key only exists in this function.
import {
  constants,
  createCipheriv,
  createHash,
  createPublicKey,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import type { OaepHash } from '../hsm/types.js';

export const IMPORT_BLOB_MAGIC = Buffer.from('HYOKIMP', 'latin1');
export const IMPORT_BLOB_VERSION = 1;
export const IMPORT_BLOB_HEADER_BYTES = 17;
const KWP_IV = Buffer.from('a65959a6', 'hex');

export interface ParsedImportBlob {
  hash: OaepHash;
  /** 8 bytes: SHA-256(import key SPKI) prefix. */
  keyFingerprint: Buffer;
  /** The CKM_RSA_AES_KEY_WRAP bytes. */
  payload: Buffer;
}

export function importKeyFingerprint(spki: Buffer): Buffer {
  return createHash('sha256').update(spki).digest().subarray(0, 8);
}

/** Wraps `keyMaterial` (AES: the raw key; RSA/EC: PKCS#8 DER) to the import key. Pure node:crypto. */
export function packImportBlob(
  publicKeySpki: Buffer,
  keyMaterial: Buffer,
  opts: { hash?: OaepHash } = {},
): Buffer {
  const hash = opts.hash ?? 'sha1';
  if (hash !== 'sha1' && hash !== 'sha256') throw new TypeError('hash must be sha1 or sha256');
  if (!Buffer.isBuffer(keyMaterial) || keyMaterial.length === 0) {
    throw new TypeError('key material must be a non-empty Buffer');
  }
  const pub = createPublicKey({ key: publicKeySpki, format: 'der', type: 'spki' });
  if (pub.asymmetricKeyType !== 'rsa') throw new TypeError('the import key must be an RSA public key');
  const eph = randomBytes(32);
  try {
    const wrappedEph = publicEncrypt(
      { key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash },
      eph,
    );
    const kwp = createCipheriv('id-aes256-wrap-pad', eph, KWP_IV);
    const wrappedKey = Buffer.concat([kwp.update(keyMaterial), kwp.final()]);
    const header = Buffer.alloc(IMPORT_BLOB_HEADER_BYTES);
    IMPORT_BLOB_MAGIC.copy(header, 0);
    header[7] = IMPORT_BLOB_VERSION;
    header[8] = hash === 'sha1' ? 1 : 2;
    importKeyFingerprint(publicKeySpki).copy(header, 9);
    return Buffer.concat([header, wrappedEph, wrappedKey]);
  } finally {
    eph.fill(0);
  }
}

/** null when the blob has no hyokd header (a raw CKM_RSA_AES_KEY_WRAP blob); throws on a bad header. */
export function parseImportBlob(blob: Buffer): ParsedImportBlob | null {
  if (blob.length < IMPORT_BLOB_MAGIC.length || !blob.subarray(0, 7).equals(IMPORT_BLOB_MAGIC)) return null;
  if (blob.length <= IMPORT_BLOB_HEADER_BYTES) throw new Error('import blob is truncated');
  if (blob[7] !== IMPORT_BLOB_VERSION) throw new Error('unknown import blob version');
  const h = blob[8];
  if (h !== 1 && h !== 2) throw new Error('unknown OAEP hash in import blob');
  return {
    hash: h === 1 ? 'sha1' : 'sha256',
    keyFingerprint: Buffer.from(blob.subarray(9, 17)),
    payload: blob.subarray(IMPORT_BLOB_HEADER_BYTES),
  };
}
