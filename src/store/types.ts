// The metadata store contract: everything hyokd remembers about keys, except the keys.
//
// Key material lives only in the HSM. The store holds names, versions (with the CKA_ID
// that finds each version on the token, and the public half of asymmetric keys),
// lifecycle state, deletion/retention dates, rotation policy, the current policy
// document, the security-domain binding, quorum requests, and intent records.
//
// Every method that changes state runs in one transaction: it either happens whole or
// not at all. Methods are async so a shared database can replace the embedded SQLite
// one (src/store/sqlite-store.ts) without changing callers. One conformance suite
// (test/store/conformance.ts) runs against every implementation.
//
// Times are milliseconds since the Unix epoch (UTC). Implementations take a clock so
// tests can move time.
//
// Intents (crash reconciliation). The key layer changes two worlds that cannot share a
// transaction: the HSM and this store. It therefore:
//   1. `beginIntent(kind, keyName, payload)` — durable before the HSM is touched;
//   2. performs the HSM step (generate, destroy, …);
//   3. commits the metadata change, passing `{ completeIntent: id }` so the intent is
//      cleared in the same transaction as the change (or calls `completeIntent(id)`).
// On start-up `listOpenIntents()` returns what was interrupted; the key layer checks the
// HSM and the store (e.g. by CKA_ID, `getVersionByCkaId`) and either finishes or undoes
// the step, then completes the intent. Payloads must never hold key material or PINs.
//
// Lifecycle rules the store enforces itself (not only the layers above):
//   - key names match KEY_NAME_PATTERN and are unique (soft-deleted keys keep their name);
//   - retention is 7..90 days and fixed at creation;
//   - purge protection, once on, can never be turned off;
//   - a soft-deleted key cannot be enabled/disabled or changed except by recover/purge;
//   - with purge protection on, purge is refused before `scheduledPurgeAt`;
//   - version numbers are 1..n per key, assigned by the store; CKA_IDs are unique hex.

export const KEY_NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$/;
export const MIN_RETENTION_DAYS = 7;
export const MAX_RETENTION_DAYS = 90;

export const KEY_KINDS = ['aes-256', 'rsa-3072', 'ec-p256'] as const;
export type KeyKind = (typeof KEY_KINDS)[number];

export const KEY_STATES = ['enabled', 'disabled', 'soft-deleted'] as const;
export type KeyState = (typeof KEY_STATES)[number];

export const VERSION_STATES = ['enabled', 'disabled'] as const;
export type VersionState = (typeof VERSION_STATES)[number];

export const KEY_ORIGINS = ['generated', 'adopted', 'imported', 'restored'] as const;
export type KeyOrigin = (typeof KEY_ORIGINS)[number];

/** Operations a key may be used for (its purpose). */
export const KEY_OPERATIONS = ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey', 'sign', 'verify'] as const;
export type KeyOperation = (typeof KEY_OPERATIONS)[number];

export type Tags = Record<string, string>;

export interface RotationPolicy {
  /** Rotate automatically this many days after the primary version was created. */
  rotationPeriodDays?: number;
  /** The key stops being usable at this time (ms epoch). */
  expiresAt?: number;
  /** Notify this many days before rotation or expiry. */
  notifyBeforeDays?: number;
}

export interface KeyRecord {
  name: string;
  kind: KeyKind;
  operations: KeyOperation[];
  state: KeyState;
  createdAt: number;
  updatedAt: number;
  tags: Tags;
  retentionDays: number;
  purgeProtection: boolean;
  /** Set only while soft-deleted. */
  deletedAt: number | null;
  scheduledPurgeAt: number | null;
  rotation: RotationPolicy;
  /** The version new wrap/encrypt/sign operations use; null before the first version. */
  primaryVersion: number | null;
  origin: KeyOrigin;
}

export interface KeyVersionRecord {
  keyName: string;
  version: number;
  /** CKA_ID on the token, lowercase hex. */
  ckaId: string;
  hsmLabel: string;
  state: VersionState;
  createdAt: number;
  /** SubjectPublicKeyInfo DER for asymmetric keys; null for AES. Never private material. */
  publicKeySpki: Buffer | null;
}

export interface NewVersion {
  ckaId: string;
  hsmLabel: string;
  publicKeySpki?: Buffer | null;
  /** Default 'enabled'. */
  state?: VersionState;
}

export interface NewKey {
  name: string;
  kind: KeyKind;
  operations: KeyOperation[];
  origin: KeyOrigin;
  retentionDays: number;
  /** Default false. */
  purgeProtection?: boolean;
  tags?: Tags;
  rotation?: RotationPolicy;
  /** Default 'enabled'. */
  state?: 'enabled' | 'disabled';
  /** Usually given: the key and its version 1 (primary) are created atomically. */
  firstVersion?: NewVersion;
}

export interface KeyFilter {
  state?: KeyState;
  namePrefix?: string;
}

export interface CommitOptions {
  /** Clear this intent in the same transaction as the change. */
  completeIntent?: string;
}

export interface IntentRecord {
  id: string;
  kind: string;
  keyName: string | null;
  payload: unknown;
  createdAt: number;
}

export interface DomainRecord {
  domainId: string;
  createdAt: number;
  metadata: Record<string, unknown>;
}

export interface PolicyDocumentRecord {
  /** Revision, 1..n, assigned by the store. */
  revision: number;
  format: 'yaml' | 'json';
  text: string;
  createdAt: number;
  createdBy: string;
}

export const REQUEST_STATES = [
  'pending',
  'approved',
  'rejected',
  'expired',
  'executed',
  'cancelled',
] as const;
export type RequestState = (typeof REQUEST_STATES)[number];

export interface Approval {
  approver: string;
  at: number;
  [extra: string]: unknown;
}

export interface PendingRequestRecord {
  id: string;
  op: string;
  keyName: string | null;
  requester: string;
  createdAt: number;
  expiresAt: number;
  state: RequestState;
  approvals: Approval[];
  /** Operation parameters (never key material). */
  payload: unknown;
}

export interface NewPendingRequest {
  op: string;
  keyName?: string | null;
  requester: string;
  expiresAt: number;
  payload?: unknown;
}

export interface PendingRequestPatch {
  state?: RequestState;
  approvals?: Approval[];
}

export interface MetadataStore {
  // ---- keys ----
  /** Creates a key (and its first version if given). ALREADY_EXISTS on a taken name or CKA_ID. */
  createKey(key: NewKey, opts?: CommitOptions): Promise<KeyRecord>;
  /** null when absent. Soft-deleted keys are returned (state tells). */
  getKey(name: string): Promise<KeyRecord | null>;
  /** Sorted by name. */
  listKeys(filter?: KeyFilter): Promise<KeyRecord[]>;
  /** enabled <-> disabled. FAILED_PRECONDITION on a soft-deleted key. */
  setKeyState(name: string, state: 'enabled' | 'disabled'): Promise<KeyRecord>;
  /** Replaces all tags. */
  setTags(name: string, tags: Tags): Promise<KeyRecord>;
  /** Replaces the rotation policy. */
  setRotationPolicy(name: string, rotation: RotationPolicy): Promise<KeyRecord>;
  /** Only false -> true; true -> false is FAILED_PRECONDITION. */
  setPurgeProtection(name: string, on: boolean): Promise<KeyRecord>;
  /** Moves to soft-deleted; scheduledPurgeAt = now + retentionDays. */
  softDelete(name: string): Promise<KeyRecord>;
  /** Back to the state it had before deletion. */
  recover(name: string): Promise<KeyRecord>;
  /**
   * Removes a soft-deleted key and its versions for good (purge). With purge protection
   * on, refused before scheduledPurgeAt.
   */
  removeKey(name: string, opts?: CommitOptions): Promise<void>;
  /** Soft-deleted keys whose scheduledPurgeAt <= at. */
  listDueForPurge(at: number): Promise<KeyRecord[]>;

  // ---- versions ----
  /** Adds version n+1. `makePrimary` defaults to true. */
  addVersion(
    keyName: string,
    version: NewVersion,
    opts?: CommitOptions & { makePrimary?: boolean },
  ): Promise<KeyVersionRecord>;
  getVersion(keyName: string, version: number): Promise<KeyVersionRecord | null>;
  getVersionByCkaId(ckaId: string): Promise<KeyVersionRecord | null>;
  /** Ascending by version. */
  listVersions(keyName: string): Promise<KeyVersionRecord[]>;
  /** Disabling the primary version is refused (rotate first). */
  setVersionState(keyName: string, version: number, state: VersionState): Promise<KeyVersionRecord>;
  /** The version must exist and be enabled. */
  setPrimaryVersion(keyName: string, version: number): Promise<KeyRecord>;

  // ---- intents ----
  beginIntent(kind: string, keyName: string | null, payload: unknown): Promise<string>;
  /** NOT_FOUND if the id is unknown (already completed). */
  completeIntent(id: string): Promise<void>;
  /** Oldest first. */
  listOpenIntents(): Promise<IntentRecord[]>;

  // ---- security domain ----
  getDomain(): Promise<DomainRecord | null>;
  /** Once only: ALREADY_EXISTS if a domain is already bound. */
  initDomain(domainId: string, metadata?: Record<string, unknown>): Promise<DomainRecord>;
  setDomainMetadata(metadata: Record<string, unknown>): Promise<DomainRecord>;

  // ---- policy document ----
  /** Stores a new revision and makes it current. */
  savePolicyDocument(doc: {
    format: 'yaml' | 'json';
    text: string;
    createdBy: string;
  }): Promise<PolicyDocumentRecord>;
  getCurrentPolicyDocument(): Promise<PolicyDocumentRecord | null>;

  // ---- quorum seam (filled by the next wave) ----
  createPendingRequest(req: NewPendingRequest): Promise<PendingRequestRecord>;
  getPendingRequest(id: string): Promise<PendingRequestRecord | null>;
  listPendingRequests(filter?: { state?: RequestState; keyName?: string }): Promise<PendingRequestRecord[]>;
  /**
   * Compare-and-set: applies `patch` only if the request is still in `ifState`
   * (CONFLICT otherwise), so two approvers cannot both win a race.
   */
  updatePendingRequest(
    id: string,
    ifState: RequestState,
    patch: PendingRequestPatch,
  ): Promise<PendingRequestRecord>;
  deletePendingRequest(id: string): Promise<void>;

  /** The schema version this store runs at. */
  schemaVersion(): Promise<number>;
  close(): Promise<void>;
}
