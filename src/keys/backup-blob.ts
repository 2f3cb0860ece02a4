// The key backup blob (BackupKey / RestoreKey), bound to one security domain.
//
// A blob is UTF-8 JSON:
//   { format: "hyokd-key-backup", v: 1, domainId, wrapped: [b64…], iv: b64, sealed: b64 }
// - `wrapped[i]` is version i's key material wrapped inside the HSM under the domain
//   backup key with CKM_AES_KEY_WRAP_PAD (AES keys raw, private keys as PKCS#8);
// - `sealed` is AES-256-GCM (in the HSM, same domain key, 96-bit IV from the HSM RNG) of
//   the metadata JSON (name, kind, operations, tags, retention, versions and their
//   states, public keys). Its AAD is `backupAad(domainId, wrapped)`: a digest of the
//   domain id and every wrapped blob, so neither can be swapped or edited without the
//   GCM tag failing.
// Only a holder of the domain backup key can open or forge a blob; the domain id in
// clear lets a restore say DOMAIN_MISMATCH instead of a generic failure.
import { createHash } from 'node:crypto';
import type { KeyKind, KeyOperation, RotationPolicy, Tags, VersionState } from '../store/types.js';

export const BACKUP_FORMAT = 'hyokd-key-backup';
export const BACKUP_VERSION = 1;

export interface BackupEnvelope {
  domainId: string;
  wrapped: Buffer[];
  iv: Buffer;
  sealed: Buffer;
}

export interface BackupMetadata {
  name: string;
  kind: KeyKind;
  operations: KeyOperation[];
  state: 'enabled' | 'disabled';
  tags: Tags;
  retentionDays: number;
  purgeProtection: boolean;
  rotation: RotationPolicy;
  primaryVersion: number;
  createdAt: number;
  backedUpAt: number;
  /** Ascending, one per `wrapped` entry. */
  versions: Array<{ version: number; state: VersionState; createdAt: number; publicKeySpki: string | null }>;
}

export function backupAad(domainId: string, wrapped: Buffer[]): Buffer {
  const h = createHash('sha256');
  h.update(`${BACKUP_FORMAT}/${BACKUP_VERSION}\0${domainId}\0`);
  for (const w of wrapped) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(w.length);
    h.update(len).update(w);
  }
  return h.digest();
}

export function encodeBackup(env: BackupEnvelope): Buffer {
  return Buffer.from(
    JSON.stringify({
      format: BACKUP_FORMAT,
      v: BACKUP_VERSION,
      domainId: env.domainId,
      wrapped: env.wrapped.map((w) => w.toString('base64')),
      iv: env.iv.toString('base64'),
      sealed: env.sealed.toString('base64'),
    }),
    'utf8',
  );
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

function b64(v: unknown, what: string): Buffer {
  if (typeof v !== 'string' || !B64.test(v)) throw new Error(`backup ${what} is not base64`);
  return Buffer.from(v, 'base64');
}

/** Throws a plain Error (mapped by the caller) on anything that is not a well-formed blob. */
export function decodeBackup(blob: Buffer): BackupEnvelope {
  let doc: unknown;
  try {
    doc = JSON.parse(blob.toString('utf8'));
  } catch {
    throw new Error('backup is not JSON');
  }
  if (typeof doc !== 'object' || doc === null) throw new Error('backup is not an object');
  const d = doc as Record<string, unknown>;
  if (d.format !== BACKUP_FORMAT) throw new Error('not a hyokd key backup');
  if (d.v !== BACKUP_VERSION) throw new Error('unknown backup version');
  if (typeof d.domainId !== 'string' || d.domainId.length === 0 || d.domainId.length > 128) {
    throw new Error('backup domain id is invalid');
  }
  if (!Array.isArray(d.wrapped) || d.wrapped.length === 0 || d.wrapped.length > 10_000) {
    throw new Error('backup has no versions');
  }
  const iv = b64(d.iv, 'iv');
  if (iv.length !== 12) throw new Error('backup iv must be 12 bytes');
  const sealed = b64(d.sealed, 'sealed metadata');
  if (sealed.length < 17) throw new Error('backup sealed metadata is truncated');
  return {
    domainId: d.domainId,
    wrapped: d.wrapped.map((w, i) => b64(w, `wrapped[${i}]`)),
    iv,
    sealed,
  };
}

export function parseBackupMetadata(text: string, versionCount: number): BackupMetadata {
  const m = JSON.parse(text) as BackupMetadata;
  if (typeof m !== 'object' || m === null || typeof m.name !== 'string' || !Array.isArray(m.versions)) {
    throw new Error('backup metadata is malformed');
  }
  if (m.versions.length !== versionCount) throw new Error('backup metadata does not match its versions');
  return m;
}
