// The contract between the data plane (src/server/) and the key layer (src/keys/).
//
// The data plane never reads the store or builds KeyRefs itself: it asks a
// `KeyResolver` for a usable version of a named key, for one operation, on every
// request. There is no cache window: a key disabled a moment ago is refused on the very
// next request (the store lookup is a few microseconds of SQLite).
import type { KeyRef } from '../hsm/types.js';
import type { KeyKind, KeyOperation, KeyState, RotationPolicy, Tags, VersionState } from '../store/types.js';

export type { KeyKind, KeyOperation, KeyState };

/** A key version that may be used right now for the operation asked. */
export interface UsableVersion {
  keyName: string;
  version: number;
  kind: KeyKind;
  /** The object that does the work: the AES key, or the private key of a pair. */
  ref: KeyRef;
  /** For asymmetric keys: the public half on the token. */
  publicRef?: KeyRef;
  /** For asymmetric keys: the public key, SubjectPublicKeyInfo DER. */
  publicKeySpki?: Buffer;
}

export interface VersionView {
  version: number;
  state: VersionState;
  createdAt: number;
  /** SubjectPublicKeyInfo DER, for asymmetric keys. */
  publicKeySpki?: Buffer;
}

/** What `GetKey` and the admin API show of a key. Never key material. */
export interface KeyView {
  name: string;
  kind: KeyKind;
  state: KeyState;
  operations: KeyOperation[];
  primaryVersion: number | null;
  versions: VersionView[];
  tags: Tags;
  createdAt: number;
  updatedAt: number;
  retentionDays: number;
  purgeProtection: boolean;
  deletedAt: number | null;
  scheduledPurgeAt: number | null;
  rotation: RotationPolicy;
  origin: string;
}

export interface KeyResolver {
  /**
   * The primary version, for new wraps/encrypts/signs. Throws HyokError (src/errors.ts):
   * KEY_NOT_FOUND, KEY_DISABLED, KEY_DELETED, OPERATION_NOT_ALLOWED (the key's purpose
   * does not include `op`), KEY_KIND_MISMATCH.
   */
  forWrap(name: string, op: KeyOperation): Promise<UsableVersion>;
  /**
   * A given version, for unwrapping envelopes made before rotations. Throws as forWrap,
   * plus VERSION_NOT_FOUND and VERSION_DISABLED.
   */
  forUnwrap(name: string, version: number, op: KeyOperation): Promise<UsableVersion>;
  /** Throws KEY_NOT_FOUND. Soft-deleted keys are described (state says so). */
  describe(name: string): Promise<KeyView>;
}
