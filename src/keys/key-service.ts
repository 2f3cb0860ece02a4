// The key layer: names -> versions -> HSM objects, and the whole key lifecycle.
//
// Hot path (KeyResolver: forWrap/forUnwrap): one indexed store read (key joined with the
// version, when the store offers getKeyWithVersion; else two), no HSM round trip,
// no cached state. A key disabled, deleted or expired a moment ago is refused on the very
// next call; the HSM backend caches handles by CKA_ID itself, and disable/delete also
// evict them so session copies die.
//
// Lifecycle changes touch two worlds that share no transaction, the HSM and the store.
// Each one writes an intent first (store), then does the HSM step, then commits the
// metadata with `completeIntent` in the same transaction. `reconcile()` (call it once at
// start, before serving) finishes or undoes whatever a crash interrupted:
//   create / rotate / import / import-key / domain: a generated object that never
//     reached the store is destroyed (the caller never saw success, so undo is the
//     honest outcome);
//   purge: the HSM destroy is repeated (idempotent) and the metadata removed;
//   restore: undone unless it had reached its last step;
//   adopt: the owner's object is never destroyed; the intent is only cleared.
// Lifecycle calls on one key name are serialized in-process (one daemon per store).
//
// Extractability and backup (trade-off, read before enabling): C_WrapKey needs
// CKA_EXTRACTABLE=true on the key it wraps. Keys are created non-extractable by default
// and can then never leave the HSM, not even as a backup; BackupKey refuses them with
// OPERATION_NOT_ALLOWED. A key created or imported with `backupable: true` is
// extractable, still sensitive (its value is never readable in clear), and anyone able to
// call C_WrapKey on the token with a wrapping key they control could export it. Choose it
// only when the HSM's own backup (token cloning) is not an option. Restored versions stay
// backupable. Rotation keeps the key's choice (read from the primary version's object).
//
// Expiry (`rotation.expiresAt`): an expired key refuses forWrap with KEY_DISABLED (ErrorInfo
// metadata reason=expired) and still unwraps/decrypts old data, as in the key-vault model.
//
// Test hook: when HYOKD_TEST_CRASH_AT names a point ("create", "rotate", "purge",
// "import", "restore", "domain"), the process SIGKILLs itself between that operation's
// HSM step and its store commit. Tests of reconcile use it; nothing sets it otherwise.

import { randomBytes, randomUUID } from 'node:crypto';
import { HsmError } from '../hsm/errors.js';
import type { HsmBackend, KeyClass, KeyRef, ObjectAttributes, OaepHash } from '../hsm/types.js';
import { HyokError, toHyokError } from '../errors.js';
import { isStoreError, StoreCodes } from '../store/errors.js';
import {
  KEY_KINDS,
  KEY_NAME_PATTERN,
  KEY_OPERATIONS,
  MAX_RETENTION_DAYS,
  MIN_RETENTION_DAYS,
  type IntentRecord,
  type KeyKind,
  type KeyOperation,
  type KeyRecord,
  type KeyVersionRecord,
  type MetadataStore,
  type RotationPolicy,
  type Tags,
} from '../store/types.js';
import { checkRotation, checkTags } from '../store/validate.js';
import {
  backupAad,
  decodeBackup,
  encodeBackup,
  parseBackupMetadata,
  type BackupMetadata,
} from './backup-blob.js';
import { importKeyFingerprint, parseImportBlob } from './import-blob.js';
import {
  DEFAULT_OPERATIONS,
  KIND_OPERATIONS,
  keyUsageFor,
  newCkaId,
  pairUsage,
  publicRef,
  secretUsage,
  versionLabel,
  versionRefs,
  workClass,
  workRef,
} from './naming.js';
import { spkiFromAttributes } from './spki.js';
import type { KeyResolver, KeyView, UsableVersion, VersionView } from './types.js';

const DAY_MS = 86_400_000;
export const DEFAULT_RETENTION_DAYS = 90;
export const DEFAULT_IMPORT_KEY_TTL_MS = 24 * 3600_000;
export const IMPORT_KEY_LABEL = 'hyokd:import-key';
export const DOMAIN_KEY_LABEL = 'hyokd:domain-backup';
const P256_OID_DER = Buffer.from('06082a8648ce3d030107', 'hex');

/** A pino-like logger (only these methods are used). */
export interface KeyLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export type KeyLifecycleEventType =
  | 'key.purged'
  | 'key.rotated'
  | 'key.rotation-due'
  | 'key.expiring'
  | 'import-key.expired'
  | 'intent.reconciled';

/** Reported through the `audit` callback by scheduled jobs and reconcile (never key material). */
export interface KeyLifecycleEvent {
  type: KeyLifecycleEventType;
  keyName: string | null;
  at: number;
  detail: Record<string, string | number | boolean>;
}

export interface KeyServiceOptions {
  hsm: HsmBackend;
  store: MetadataStore;
  /** ms since the epoch; default Date.now. Give the store the same clock. */
  clock?: () => number;
  log?: KeyLogger;
  audit?: (event: KeyLifecycleEvent) => Promise<void>;
  /** Lifetime of BYOK import keys; default 24 h. */
  importKeyTtlMs?: number;
}

/** A version as the admin API shows it. */
export interface AdminVersionView extends VersionView {
  /** CKA_ID on the token, lowercase hex (diagnostics). */
  hsmObjectId: string;
  hsmLabel: string;
}

/** KeyView plus what the admin API shows beyond the data plane's view. */
export interface AdminKeyView extends KeyView {
  versions: AdminVersionView[];
  /** When the rotation policy next rotates the key; null without a period. */
  nextRotationAt: number | null;
}

export interface CreateKeyInput {
  name: string;
  kind: KeyKind;
  /** Empty/absent: the kind's defaults (DEFAULT_OPERATIONS). */
  operations?: KeyOperation[];
  tags?: Tags;
  /** 7..90, default 90. */
  retentionDays?: number;
  purgeProtection?: boolean;
  rotation?: RotationPolicy;
  /** CKA_EXTRACTABLE=true so BackupKey works (see the top of this file). Default false. */
  backupable?: boolean;
  /** Default true. */
  enabled?: boolean;
}

export interface ListKeysInput {
  includeDeleted?: boolean;
  namePrefix?: string;
  /** Only keys carrying all these tags with these values. */
  tagFilter?: Tags;
  /** Default 100, at most 1000. */
  pageSize?: number;
  /** The previous page's nextPageToken. */
  pageToken?: string;
}

export interface AdoptKeyInput {
  name: string;
  kind: KeyKind;
  /** Exactly one of hsmObjectId (CKA_ID) and hsmLabel (CKA_LABEL). */
  hsmObjectId?: Buffer;
  hsmLabel?: string;
  operations?: KeyOperation[];
  tags?: Tags;
  retentionDays?: number;
  purgeProtection?: boolean;
  /** Accept an extractable object (refused by default). Non-sensitive objects are always refused. */
  allowExtractable?: boolean;
}

/** The admin proto's ImportWrapAlgorithm names. */
export type ImportWrapAlgorithm = 'RSA_AES_KEY_WRAP_SHA1' | 'RSA_AES_KEY_WRAP_SHA256' | 'RSA_OAEP_SHA256';

export interface ImportKeyInput {
  name: string;
  kind: KeyKind;
  importKeyId: string;
  /** A `packImportBlob` blob, or raw wrapped material when `wrapAlgorithm` is given. */
  wrapped: Buffer;
  /** Required for blobs without the hyokd header; must agree with the header otherwise. */
  wrapAlgorithm?: ImportWrapAlgorithm;
  /** Add a version to the existing key `name` (same kind) and make it primary. */
  newVersion?: boolean;
  operations?: KeyOperation[];
  tags?: Tags;
  retentionDays?: number;
  purgeProtection?: boolean;
  backupable?: boolean;
}

export interface ImportKeyHandle {
  importKeyId: string;
  publicKeySpki: Buffer;
  supportedAlgorithms: ImportWrapAlgorithm[];
  expiresAt: number;
}

export interface ReconcileAction {
  intentId: string;
  kind: string;
  keyName: string | null;
  /** What was done: 'rolled-back', 'completed', 'cleared', 'left-open'. */
  action: string;
  detail?: string;
}

function err(
  code: ConstructorParameters<typeof HyokError>[0],
  opts?: ConstructorParameters<typeof HyokError>[1],
) {
  return new HyokError(code, opts);
}

function invalid(detail: string): HyokError {
  return new HyokError('INVALID_REQUEST', { params: { detail } });
}

function crashPoint(point: string): void {
  if (process.env.HYOKD_TEST_CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
}

function hex(b: Buffer): string {
  return b.toString('hex');
}

function checkName(name: unknown): string {
  if (typeof name !== 'string' || !KEY_NAME_PATTERN.test(name)) throw err('KEY_NAME_INVALID');
  return name;
}

function checkKind(kind: unknown): KeyKind {
  if (!(KEY_KINDS as readonly unknown[]).includes(kind)) {
    throw invalid(`kind must be one of ${KEY_KINDS.join(', ')}`);
  }
  return kind as KeyKind;
}

function checkRetentionDays(days: number | undefined): number {
  const d = days === undefined || days === 0 ? DEFAULT_RETENTION_DAYS : days;
  if (!Number.isInteger(d) || d < MIN_RETENTION_DAYS || d > MAX_RETENTION_DAYS) {
    throw err('RETENTION_RANGE', { params: { days: String(d) } });
  }
  return d;
}

function checkOperations(kind: KeyKind, ops: KeyOperation[] | undefined): KeyOperation[] {
  if (ops === undefined || ops.length === 0) return [...DEFAULT_OPERATIONS[kind]];
  const out: KeyOperation[] = [];
  for (const op of ops) {
    if (!(KEY_OPERATIONS as readonly string[]).includes(op))
      throw invalid(`unknown operation "${String(op)}"`);
    if (!KIND_OPERATIONS[kind].includes(op)) throw invalid(`a ${kind} key cannot ${op}`);
    if (!out.includes(op)) out.push(op);
  }
  return out;
}

/** SoftHSM2 reports CKA_VALUE_LEN 0 for unwrapped keys: 0 means unknown, not wrong. */
function aesLenOk(a: ObjectAttributes): boolean {
  return a.valueLen === undefined || a.valueLen === 0 || a.valueLen === 32;
}

function validated<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (isStoreError(e, StoreCodes.INVALID_ARGUMENT)) throw invalid(e.message);
    throw e;
  }
}

/** Store errors to registry errors, in the context of one key. */
function fromStore(e: unknown, what: 'key' | 'version' = 'key'): HyokError {
  if (e instanceof HyokError) return e;
  if (isStoreError(e)) {
    switch (e.code) {
      case StoreCodes.NOT_FOUND:
        return err(what === 'version' ? 'VERSION_NOT_FOUND' : 'KEY_NOT_FOUND', { cause: e });
      case StoreCodes.ALREADY_EXISTS:
        return err('KEY_EXISTS', { cause: e });
      case StoreCodes.INVALID_ARGUMENT:
      case StoreCodes.FAILED_PRECONDITION:
        // Store messages name fields and keys only: safe to show.
        return new HyokError('INVALID_REQUEST', { params: { detail: e.message }, cause: e });
      default:
        return err('INTERNAL', { cause: e });
    }
  }
  return toHyokError(e);
}

/** Runs one store call, turning a store error into the key layer's error (fromStore). */
async function stored<T>(call: () => Promise<T>, what: 'key' | 'version' = 'key'): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw fromStore(e, what);
  }
}

const IMPORT_FAILURE_CODES = new Set([
  'CKR_GENERAL_ERROR',
  'CKR_WRAPPED_KEY_INVALID',
  'CKR_WRAPPED_KEY_LEN_RANGE',
  'CKR_ENCRYPTED_DATA_INVALID',
  'CKR_ENCRYPTED_DATA_LEN_RANGE',
  'CKR_DATA_INVALID',
  'CKR_DATA_LEN_RANGE',
  'CKR_AEAD_DECRYPT_FAILED',
  'CKR_TEMPLATE_INCONSISTENT',
  'CKR_KEY_SIZE_RANGE',
  'CKR_ARGUMENTS_BAD',
]);

/** A failed unwrap/decrypt of caller-supplied bytes is the bytes' fault, not the server's. */
function blobError(e: unknown): HyokError {
  if (e instanceof HsmError && !e.retriable && IMPORT_FAILURE_CODES.has(e.code)) {
    return err('IMPORT_BLOB_INVALID', { cause: e });
  }
  return toHyokError(e);
}

/** An optional store read: a key and one of its versions in one snapshot (see SqliteMetadataStore). */
interface JoinedKeyRead {
  getKeyWithVersion(
    name: string,
    version: number | 'primary',
  ): Promise<{ key: KeyRecord; version: KeyVersionRecord | null } | null>;
}

export class KeyService implements KeyResolver {
  readonly #hsm: HsmBackend;
  readonly #store: MetadataStore;
  readonly #clock: () => number;
  readonly #log: KeyLogger | undefined;
  readonly #audit: ((event: KeyLifecycleEvent) => Promise<void>) | undefined;
  readonly #importTtl: number;
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #notified = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(opts: KeyServiceOptions) {
    this.#hsm = opts.hsm;
    this.#store = opts.store;
    this.#clock = opts.clock ?? Date.now;
    this.#log = opts.log;
    this.#audit = opts.audit;
    this.#importTtl = opts.importKeyTtlMs ?? DEFAULT_IMPORT_KEY_TTL_MS;
  }

  // ---------------------------------------------------------------------------------
  // KeyResolver: the hot path
  // ---------------------------------------------------------------------------------

  async forWrap(name: string, op: KeyOperation): Promise<UsableVersion> {
    const joined = this.#joined;
    let key: KeyRecord | null;
    let v: KeyVersionRecord | null = null;
    if (joined) {
      const r = await joined.getKeyWithVersion(name, 'primary');
      key = r?.key ?? null;
      v = r?.version ?? null;
    } else {
      key = await this.#store.getKey(name);
    }
    if (!key) throw err('KEY_NOT_FOUND');
    this.#checkUsable(key, op);
    const exp = key.rotation.expiresAt;
    if (exp !== undefined && exp <= this.#clock()) {
      throw err('KEY_DISABLED', { metadata: { reason: 'expired' } });
    }
    if (key.primaryVersion === null) throw err('VERSION_NOT_FOUND');
    if (!joined) v = await this.#store.getVersion(name, key.primaryVersion);
    if (!v) throw err('VERSION_NOT_FOUND');
    if (v.state !== 'enabled') throw err('VERSION_DISABLED');
    return this.#usable(key, v);
  }

  async forUnwrap(name: string, version: number, op: KeyOperation): Promise<UsableVersion> {
    const validVersion = Number.isSafeInteger(version) && version >= 1;
    const joined = validVersion ? this.#joined : undefined;
    let key: KeyRecord | null;
    let v: KeyVersionRecord | null = null;
    if (joined) {
      const r = await joined.getKeyWithVersion(name, version);
      key = r?.key ?? null;
      v = r?.version ?? null;
    } else {
      key = await this.#store.getKey(name);
    }
    if (!key) throw err('KEY_NOT_FOUND');
    this.#checkUsable(key, op);
    if (!validVersion) throw err('VERSION_NOT_FOUND');
    if (!joined) v = await this.#store.getVersion(name, version);
    if (!v) throw err('VERSION_NOT_FOUND');
    if (v.state !== 'enabled') throw err('VERSION_DISABLED');
    return this.#usable(key, v);
  }

  /** The store's one-statement key+version read, when it has one (SqliteMetadataStore does). */
  get #joined(): JoinedKeyRead | undefined {
    const s = this.#store as MetadataStore & Partial<JoinedKeyRead>;
    return typeof s.getKeyWithVersion === 'function' ? (s as unknown as JoinedKeyRead) : undefined;
  }

  async describe(name: string): Promise<AdminKeyView> {
    const key = await this.#store.getKey(name);
    if (!key) throw err('KEY_NOT_FOUND');
    return this.#view(key);
  }

  #checkUsable(key: KeyRecord, op: KeyOperation): void {
    if (key.state === 'soft-deleted') throw err('KEY_DELETED');
    if (key.state !== 'enabled') throw err('KEY_DISABLED');
    if (!KIND_OPERATIONS[key.kind].includes(op)) throw err('KEY_KIND_MISMATCH');
    if (!key.operations.includes(op)) throw err('OPERATION_NOT_ALLOWED');
  }

  #usable(key: KeyRecord, v: KeyVersionRecord): UsableVersion {
    const out: UsableVersion = {
      keyName: key.name,
      version: v.version,
      kind: key.kind,
      ref: workRef(key.kind, v.ckaId),
    };
    if (key.kind !== 'aes-256') {
      // Imported and restored pairs have no public object on the token (the HSM ops
      // cannot create one from an SPKI); their public key is the stored SPKI.
      if (key.origin === 'generated' || key.origin === 'adopted') out.publicRef = publicRef(v.ckaId);
      if (v.publicKeySpki) out.publicKeySpki = v.publicKeySpki;
    }
    return out;
  }

  async #view(key: KeyRecord): Promise<AdminKeyView> {
    const versions = await this.#store.listVersions(key.name);
    let nextRotationAt: number | null = null;
    const period = key.rotation.rotationPeriodDays;
    if (period !== undefined && key.primaryVersion !== null) {
      const p = versions.find((v) => v.version === key.primaryVersion);
      if (p) nextRotationAt = p.createdAt + period * DAY_MS;
    }
    return {
      name: key.name,
      kind: key.kind,
      state: key.state,
      operations: [...key.operations],
      primaryVersion: key.primaryVersion,
      versions: versions.map((v) => {
        const vv: AdminVersionView = {
          version: v.version,
          state: v.state,
          createdAt: v.createdAt,
          hsmObjectId: v.ckaId,
          hsmLabel: v.hsmLabel,
        };
        if (v.publicKeySpki) vv.publicKeySpki = v.publicKeySpki;
        return vv;
      }),
      tags: { ...key.tags },
      createdAt: key.createdAt,
      updatedAt: key.updatedAt,
      retentionDays: key.retentionDays,
      purgeProtection: key.purgeProtection,
      deletedAt: key.deletedAt,
      scheduledPurgeAt: key.scheduledPurgeAt,
      rotation: { ...key.rotation },
      origin: key.origin,
      nextRotationAt,
    };
  }

  // ---------------------------------------------------------------------------------
  // Helpers
  // ---------------------------------------------------------------------------------

  /** Serializes lifecycle changes per key name within this process. */
  async #locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(name) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.#locks.set(name, tail);
    try {
      return await run;
    } finally {
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    }
  }

  async #mustKey(name: string): Promise<KeyRecord> {
    const key = await this.#store.getKey(checkName(name));
    if (!key) throw err('KEY_NOT_FOUND');
    return key;
  }

  async #mustLive(name: string): Promise<KeyRecord> {
    const key = await this.#mustKey(name);
    if (key.state === 'soft-deleted') throw err('KEY_DELETED');
    return key;
  }

  async #evict(kind: KeyKind, versions: Pick<KeyVersionRecord, 'ckaId'>[]): Promise<void> {
    for (const v of versions) {
      for (const ref of versionRefs(kind, v)) {
        try {
          await this.#hsm.evictKey(ref);
        } catch (e) {
          this.#log?.warn({ err: e, ckaId: v.ckaId }, 'evicting a key version failed');
        }
      }
    }
  }

  /** Finds key objects (any key class) with these CKA_IDs. */
  async #findKeyObjects(
    ckaIds: string[],
    classes: KeyClass[] = ['secret', 'private', 'public'],
  ): Promise<number[]> {
    const ops = ckaIds.flatMap((id) =>
      classes.map((cls) => ({ op: 'find' as const, cls, id: Buffer.from(id, 'hex') })),
    );
    if (ops.length === 0) return [];
    const res = await this.#hsm.batch(ops);
    const handles: number[] = [];
    for (const r of res) {
      if (!r.ok) throw r.error;
      handles.push(...(r as unknown as { handles: number[] }).handles);
    }
    return handles;
  }

  /** Destroys every key object carrying one of these CKA_IDs; returns how many. Idempotent. */
  async #destroyObjects(ckaIds: string[]): Promise<number> {
    const handles = await this.#findKeyObjects(ckaIds);
    if (handles.length === 0) return 0;
    const res = await this.#hsm.batch(handles.map((handle) => ({ op: 'destroy' as const, handle })));
    for (const r of res) if (!r.ok) throw r.error;
    return handles.length;
  }

  /** Undo after a failed change: destroy what was generated and clear the intent, logging failures. */
  async #rollback(intentId: string, ckaIds: string[]): Promise<void> {
    try {
      await this.#destroyObjects(ckaIds);
      await this.#store.completeIntent(intentId);
    } catch (e) {
      this.#log?.error({ err: e, intentId }, 'rollback failed; reconcile() will retry');
    }
  }

  async #attrs(handle: number): Promise<ObjectAttributes> {
    return (await this.#hsm.run({ op: 'getAttributes', handle })).attrs;
  }

  /** Generates version objects; returns the SPKI for pairs. */
  async #generate(
    kind: KeyKind,
    id: Buffer,
    label: string,
    ops: KeyOperation[],
    extractable: boolean,
  ): Promise<Buffer | null> {
    if (kind === 'aes-256') {
      await this.#hsm.run({
        op: 'generateKey',
        keyBits: 256,
        spec: { id, label, token: true, extractable, usage: secretUsage(ops) },
      });
      return null;
    }
    const u = pairUsage(ops);
    const pair = await this.#hsm.run({
      op: 'generateKeyPair',
      kind: kind === 'rsa-3072' ? 'rsa' : 'ec',
      ...(kind === 'rsa-3072' ? { modulusBits: 3072 } : { curve: 'P-256' as const }),
      publicSpec: { id, label, token: true, usage: u.pub },
      privateSpec: { id, label, token: true, extractable, usage: u.priv },
    });
    return spkiFromAttributes(await this.#attrs(pair.publicHandle));
  }

  async #emit(event: Omit<KeyLifecycleEvent, 'at'>): Promise<void> {
    const full: KeyLifecycleEvent = { ...event, at: this.#clock() };
    this.#log?.info({ event: full }, 'key lifecycle event');
    if (!this.#audit) return;
    try {
      await this.#audit(full);
    } catch (e) {
      this.#log?.error({ err: e, type: event.type, keyName: event.keyName }, 'audit callback failed');
    }
  }

  // ---------------------------------------------------------------------------------
  // Create, list, rotate, state, tags, policy
  // ---------------------------------------------------------------------------------

  async createKey(input: CreateKeyInput): Promise<AdminKeyView> {
    const name = checkName(input.name);
    const kind = checkKind(input.kind);
    const operations = checkOperations(kind, input.operations);
    const retentionDays = checkRetentionDays(input.retentionDays);
    const tags = input.tags ?? {};
    const rotation = input.rotation ?? {};
    validated(() => {
      checkTags(tags);
      checkRotation(rotation);
    });
    return this.#locked(name, async () => {
      if (await this.#store.getKey(name)) throw err('KEY_EXISTS');
      const id = newCkaId();
      const ckaId = hex(id);
      const label = versionLabel(name, 1);
      const intent = await this.#store.beginIntent('create', name, { ckaId, kind });
      let spki: Buffer | null;
      try {
        spki = await this.#generate(kind, id, label, operations, input.backupable === true);
      } catch (e) {
        await this.#rollback(intent, [ckaId]);
        throw toHyokError(e);
      }
      crashPoint('create');
      let key: KeyRecord;
      try {
        key = await this.#store.createKey(
          {
            name,
            kind,
            operations,
            origin: 'generated',
            retentionDays,
            purgeProtection: input.purgeProtection === true,
            tags,
            rotation,
            state: input.enabled === false ? 'disabled' : 'enabled',
            firstVersion: { ckaId, hsmLabel: label, publicKeySpki: spki },
          },
          { completeIntent: intent },
        );
      } catch (e) {
        await this.#rollback(intent, [ckaId]);
        throw fromStore(e);
      }
      return this.#view(key);
    });
  }

  async listKeys(input: ListKeysInput = {}): Promise<{ keys: AdminKeyView[]; nextPageToken: string }> {
    const size = Math.min(Math.max(1, input.pageSize || 100), 1000);
    let after = '';
    if (input.pageToken) {
      after = Buffer.from(input.pageToken, 'base64url').toString('utf8');
      if (!KEY_NAME_PATTERN.test(after)) throw invalid('bad page token');
    }
    const all = await this.#store.listKeys(input.namePrefix ? { namePrefix: input.namePrefix } : {});
    const keys: AdminKeyView[] = [];
    let next = '';
    for (const k of all) {
      if (after && k.name <= after) continue;
      if (!input.includeDeleted && k.state === 'soft-deleted') continue;
      if (input.tagFilter && !Object.entries(input.tagFilter).every(([t, v]) => k.tags[t] === v)) continue;
      if (keys.length === size) {
        next = Buffer.from(keys[keys.length - 1]!.name, 'utf8').toString('base64url');
        break;
      }
      keys.push(await this.#view(k));
    }
    return { keys, nextPageToken: next };
  }

  /** New primary version; older versions keep unwrapping. `reason` goes to the audit event. */
  async rotateKey(
    name: string,
    opts: { reason?: string } = {},
  ): Promise<{ key: AdminKeyView; newVersion: number }> {
    checkName(name);
    return this.#locked(name, async () => {
      const key = await this.#mustLive(name);
      const versions = await this.#store.listVersions(name);
      const next = (versions[versions.length - 1]?.version ?? 0) + 1;
      const extractable = await this.#primaryExtractable(key, versions);
      const id = newCkaId();
      const ckaId = hex(id);
      const label = versionLabel(name, next);
      const intent = await this.#store.beginIntent('rotate', name, { ckaId, kind: key.kind });
      let spki: Buffer | null;
      try {
        spki = await this.#generate(key.kind, id, label, key.operations, extractable);
      } catch (e) {
        await this.#rollback(intent, [ckaId]);
        throw toHyokError(e);
      }
      crashPoint('rotate');
      let v: KeyVersionRecord;
      try {
        v = await this.#store.addVersion(
          name,
          { ckaId, hsmLabel: label, publicKeySpki: spki },
          { completeIntent: intent, makePrimary: true },
        );
      } catch (e) {
        await this.#rollback(intent, [ckaId]);
        throw fromStore(e);
      }
      if (opts.reason) {
        await this.#emit({
          type: 'key.rotated',
          keyName: name,
          detail: { version: v.version, reason: opts.reason },
        });
      }
      return { key: await this.#view(await this.#mustKey(name)), newVersion: v.version };
    });
  }

  async #primaryExtractable(key: KeyRecord, versions: KeyVersionRecord[]): Promise<boolean> {
    const p = versions.find((v) => v.version === key.primaryVersion) ?? versions[versions.length - 1];
    if (!p) return false;
    const { handles } = await this.#hsm.run({
      op: 'find',
      cls: workClass(key.kind),
      id: Buffer.from(p.ckaId, 'hex'),
    });
    if (handles.length !== 1) return false;
    return (await this.#attrs(handles[0]!)).extractable;
  }

  /** Enables or disables the key, or only one version. Effective on the next request. */
  async setKeyState(name: string, enabled: boolean, version?: number): Promise<AdminKeyView> {
    checkName(name);
    return this.#locked(name, async () => {
      const key = await this.#mustLive(name);
      if (version !== undefined) {
        const v = await this.#store.getVersion(name, version);
        if (!v) throw err('VERSION_NOT_FOUND');
        if (!enabled && key.primaryVersion === version) {
          throw invalid('the primary version cannot be disabled on its own; rotate first');
        }
        await stored(
          () => this.#store.setVersionState(name, version, enabled ? 'enabled' : 'disabled'),
          'version',
        );
        if (!enabled) await this.#evict(key.kind, [v]);
      } else {
        await stored(() => this.#store.setKeyState(name, enabled ? 'enabled' : 'disabled'));
        if (!enabled) await this.#evict(key.kind, await this.#store.listVersions(name));
      }
      return this.#view(await this.#mustKey(name));
    });
  }

  /** Tags: merged unless `replace`; `remove` applied last. */
  async setTags(
    name: string,
    input: { tags?: Tags; replace?: boolean; remove?: string[] },
  ): Promise<AdminKeyView> {
    checkName(name);
    return this.#locked(name, async () => {
      const key = await this.#mustLive(name);
      const tags: Tags = input.replace ? { ...(input.tags ?? {}) } : { ...key.tags, ...(input.tags ?? {}) };
      for (const r of input.remove ?? []) delete tags[r];
      validated(() => checkTags(tags));
      return this.#view(await stored(() => this.#store.setTags(name, tags)));
    });
  }

  /** Replaces the rotation policy (null or {} clears it). */
  async setRotationPolicy(name: string, rotation: RotationPolicy | null): Promise<AdminKeyView> {
    checkName(name);
    const r = rotation ?? {};
    validated(() => checkRotation(r));
    return this.#locked(name, async () => {
      await this.#mustLive(name);
      return this.#view(await stored(() => this.#store.setRotationPolicy(name, r)));
    });
  }

  /** Turns purge protection on (it can never be turned off). */
  async enablePurgeProtection(name: string): Promise<AdminKeyView> {
    checkName(name);
    return this.#locked(name, async () => {
      await this.#mustKey(name);
      return this.#view(await stored(() => this.#store.setPurgeProtection(name, true)));
    });
  }

  // ---------------------------------------------------------------------------------
  // Delete, recover, purge
  // ---------------------------------------------------------------------------------

  async deleteKey(name: string): Promise<AdminKeyView> {
    checkName(name);
    return this.#locked(name, async () => {
      const key = await this.#mustLive(name);
      const deleted = await stored(() => this.#store.softDelete(name));
      await this.#evict(key.kind, await this.#store.listVersions(name));
      return this.#view(deleted);
    });
  }

  async recoverKey(name: string): Promise<AdminKeyView> {
    checkName(name);
    return this.#locked(name, async () => {
      const key = await this.#mustKey(name);
      if (key.state !== 'soft-deleted') throw err('KEY_NOT_DELETED');
      return this.#view(await stored(() => this.#store.recover(name)));
    });
  }

  /** Destroys a soft-deleted key's HSM objects (all versions, both halves) and its metadata. */
  async purgeKey(name: string): Promise<{ name: string; purgedAt: number }> {
    checkName(name);
    return this.#locked(name, () => this.#purge(name));
  }

  async #purge(name: string): Promise<{ name: string; purgedAt: number }> {
    const key = await this.#mustKey(name);
    if (key.state !== 'soft-deleted') throw err('KEY_NOT_DELETED');
    const now = this.#clock();
    if (key.purgeProtection && now < (key.scheduledPurgeAt ?? Infinity)) throw err('PURGE_PROTECTED');
    const versions = await this.#store.listVersions(name);
    const ckaIds = versions.map((v) => v.ckaId);
    const intent = await this.#store.beginIntent('purge', name, { ckaIds, kind: key.kind });
    await this.#evict(key.kind, versions);
    try {
      await this.#destroyObjects(ckaIds);
    } catch (e) {
      // The intent stays open: reconcile() repeats the destroy, which is idempotent.
      throw toHyokError(e);
    }
    crashPoint('purge');
    await stored(() => this.#store.removeKey(name, { completeIntent: intent }));
    return { name, purgedAt: now };
  }

  /** The scheduled purge: every soft-deleted key whose retention ended by `now`. */
  async purgeExpired(now: number = this.#clock()): Promise<string[]> {
    const due = await this.#store.listDueForPurge(now);
    const purged: string[] = [];
    for (const k of due) {
      try {
        await this.purgeKey(k.name);
        purged.push(k.name);
        await this.#emit({
          type: 'key.purged',
          keyName: k.name,
          detail: {
            reason: 'retention-ended',
            primaryVersion: k.primaryVersion ?? 0,
            scheduledPurgeAt: k.scheduledPurgeAt ?? 0,
          },
        });
      } catch (e) {
        this.#log?.error({ err: e, keyName: k.name }, 'scheduled purge failed');
      }
    }
    return purged;
  }

  /** The scheduled rotation: enabled keys whose primary version is older than their period. Also notifies. */
  async rotateDue(now: number = this.#clock()): Promise<string[]> {
    const rotated: string[] = [];
    for (const k of await this.#store.listKeys({ state: 'enabled' })) {
      const { rotationPeriodDays: period, notifyBeforeDays: notify, expiresAt } = k.rotation;
      if (expiresAt !== undefined && notify !== undefined && now >= expiresAt - notify * DAY_MS) {
        const tag = `${k.name}:expiry:${expiresAt}`;
        if (!this.#notified.has(tag)) {
          this.#notified.add(tag);
          await this.#emit({ type: 'key.expiring', keyName: k.name, detail: { expiresAt } });
        }
      }
      if (period === undefined || k.primaryVersion === null) continue;
      const p = await this.#store.getVersion(k.name, k.primaryVersion);
      if (!p) continue;
      const dueAt = p.createdAt + period * DAY_MS;
      if (now >= dueAt) {
        try {
          await this.rotateKey(k.name, { reason: 'rotation-policy' });
          rotated.push(k.name);
        } catch (e) {
          this.#log?.error({ err: e, keyName: k.name }, 'scheduled rotation failed');
        }
      } else if (notify !== undefined && now >= dueAt - notify * DAY_MS) {
        const tag = `${k.name}:rotate:${k.primaryVersion}`;
        if (!this.#notified.has(tag)) {
          this.#notified.add(tag);
          await this.#emit({
            type: 'key.rotation-due',
            keyName: k.name,
            detail: { dueAt, version: k.primaryVersion },
          });
        }
      }
    }
    return rotated;
  }

  /** One scheduler pass: purge, rotate by policy, destroy expired import keys. */
  async runScheduledJobs(now: number = this.#clock()): Promise<void> {
    await this.purgeExpired(now);
    await this.rotateDue(now);
    await this.expireImportKeys(now);
  }

  /** Runs `runScheduledJobs` every `intervalMs` (default 60 s) on an unref'd timer. */
  startScheduler(opts: { intervalMs?: number } = {}): void {
    if (this.#timer) return;
    const tick = () => {
      if (this.#running) return;
      this.#running = this.runScheduledJobs()
        .catch((e: unknown) => this.#log?.error({ err: e }, 'scheduled key jobs failed'))
        .finally(() => {
          this.#running = undefined;
        });
    };
    this.#timer = setInterval(tick, opts.intervalMs ?? 60_000);
    this.#timer.unref();
  }

  /** Stops the scheduler and waits for a pass in progress. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  // ---------------------------------------------------------------------------------
  // Adopt
  // ---------------------------------------------------------------------------------

  /** Takes an object already on the token under management (version 1 of `name`), without copying it. */
  async adoptKey(input: AdoptKeyInput): Promise<AdminKeyView> {
    const name = checkName(input.name);
    const kind = checkKind(input.kind);
    const retentionDays = checkRetentionDays(input.retentionDays);
    const tags = input.tags ?? {};
    validated(() => checkTags(tags));
    if ((input.hsmObjectId === undefined) === (input.hsmLabel === undefined)) {
      throw invalid('give exactly one of hsmObjectId and hsmLabel');
    }
    if (input.hsmObjectId !== undefined && input.hsmObjectId.length === 0)
      throw invalid('hsmObjectId is empty');
    const cls = workClass(kind);
    return this.#locked(name, async () => {
      if (await this.#store.getKey(name)) throw err('KEY_EXISTS');
      const { handles } = await this.#hsm.run(
        input.hsmObjectId !== undefined
          ? { op: 'find', cls, id: input.hsmObjectId }
          : { op: 'find', cls, label: input.hsmLabel! },
      );
      if (handles.length === 0) throw err('KEY_NOT_FOUND');
      if (handles.length > 1)
        throw invalid(`${handles.length} objects match; select the object by a unique CKA_ID`);
      const handle = handles[0]!;
      const a = await this.#attrs(handle);
      const fits =
        (kind === 'aes-256' && a.keyType === 'aes' && aesLenOk(a)) ||
        (kind === 'rsa-3072' &&
          a.keyType === 'rsa' &&
          (a.modulus === undefined || a.modulus.length === 384)) ||
        (kind === 'ec-p256' &&
          a.keyType === 'ec' &&
          (a.ecParams === undefined || a.ecParams.equals(P256_OID_DER)));
      if (!fits) throw err('KEY_KIND_MISMATCH');
      if (!a.sensitive)
        throw invalid('the object is not sensitive; hyokd never manages readable key material');
      if (a.extractable && input.allowExtractable !== true) {
        throw invalid('the object is extractable; adopt it with allowExtractable if that is intended');
      }
      if (!a.token) throw invalid('the object is a session object');
      // Operations: what was asked, or the kind's defaults the object's usage permits.
      const want = input.operations?.length
        ? checkOperations(kind, input.operations)
        : DEFAULT_OPERATIONS[kind];
      const need = keyUsageFor(kind, want);
      const lacking = (Object.keys(need) as (keyof typeof need)[]).filter((u) => need[u] && !a.usage[u]);
      let operations = want;
      if (lacking.length > 0) {
        if (input.operations?.length) throw invalid(`the object lacks usage: ${lacking.join(', ')}`);
        operations = want.filter((op) => {
          const u = keyUsageFor(kind, [op]);
          return (Object.keys(u) as (keyof typeof u)[]).every((x) => !u[x] || a.usage[x]);
        });
        if (operations.length === 0) throw invalid('the object permits none of the operations of its kind');
      }
      let id = a.id;
      let intent: string | undefined;
      if (id.length === 0) {
        // No CKA_ID: give it one (the backend finds keys by CKA_ID). Nothing else changes.
        id = newCkaId();
        intent = await this.#store.beginIntent('adopt', name, { ckaId: hex(id) });
        await this.#hsm.run({ op: 'setAttributes', handle, attrs: { id } });
      } else {
        const same = await this.#findKeyObjects([hex(id)], [cls]);
        if (same.length !== 1) throw invalid('the object shares its CKA_ID with other keys');
      }
      const ckaId = hex(id);
      if (await this.#store.getVersionByCkaId(ckaId)) throw err('KEY_EXISTS');
      let spki: Buffer | null = null;
      if (kind !== 'aes-256') {
        const pubs = await this.#findKeyObjects([ckaId], ['public']);
        if (pubs.length === 1) spki = spkiFromAttributes(await this.#attrs(pubs[0]!));
        else if (kind === 'rsa-3072' && a.modulus && a.publicExponent) spki = spkiFromAttributes(a);
        else throw invalid('no unique public key object with the same CKA_ID');
      }
      try {
        const key = await this.#store.createKey(
          {
            name,
            kind,
            operations,
            origin: 'adopted',
            retentionDays,
            purgeProtection: input.purgeProtection === true,
            tags,
            firstVersion: { ckaId, hsmLabel: a.label || versionLabel(name, 1), publicKeySpki: spki },
          },
          intent ? { completeIntent: intent } : {},
        );
        return this.#view(key);
      } catch (e) {
        if (intent) await this.#store.completeIntent(intent).catch(() => undefined);
        throw fromStore(e);
      }
    });
  }

  // ---------------------------------------------------------------------------------
  // BYOK import
  // ---------------------------------------------------------------------------------

  async #importAlgorithms(): Promise<ImportWrapAlgorithm[]> {
    const caps = await this.#hsm.capabilities();
    const out: ImportWrapAlgorithm[] = [];
    const kwp = caps.rsaAesKeyWrap || caps.aesKeyWrapPad;
    if (kwp && caps.oaepSha1) out.push('RSA_AES_KEY_WRAP_SHA1');
    if (kwp && caps.oaepSha256) out.push('RSA_AES_KEY_WRAP_SHA256');
    if (caps.oaepSha256) out.push('RSA_OAEP_SHA256');
    return out;
  }

  /**
   * Creates an RSA-3072 key-exchange key on the token, usable only for unwrap, valid for
   * the import TTL. Its id is the hex CKA_ID: 8 bytes of expiry time (ms, big-endian)
   * then 8 random bytes, so the expiry needs no extra storage and cannot be extended by
   * editing an id (the object would not be found).
   */
  async createImportKey(): Promise<ImportKeyHandle> {
    const expiresAt = this.#clock() + this.#importTtl;
    const id = Buffer.alloc(16);
    id.writeBigUInt64BE(BigInt(expiresAt), 0);
    randomBytes(8).copy(id, 8);
    const intent = await this.#store.beginIntent('import-key', null, { ckaId: hex(id) });
    let spki: Buffer;
    try {
      const pair = await this.#hsm.run({
        op: 'generateKeyPair',
        kind: 'rsa',
        modulusBits: 3072,
        publicSpec: { id, label: IMPORT_KEY_LABEL, token: true, usage: { wrap: true, encrypt: true } },
        privateSpec: {
          id,
          label: IMPORT_KEY_LABEL,
          token: true,
          extractable: false,
          usage: { unwrap: true },
        },
      });
      spki = spkiFromAttributes(await this.#attrs(pair.publicHandle));
    } catch (e) {
      await this.#rollback(intent, [hex(id)]);
      throw toHyokError(e);
    }
    await this.#store.completeIntent(intent);
    return {
      importKeyId: hex(id),
      publicKeySpki: spki,
      supportedAlgorithms: await this.#importAlgorithms(),
      expiresAt,
    };
  }

  /** Destroys import keys whose time is up; returns how many. */
  async expireImportKeys(now: number = this.#clock()): Promise<number> {
    const { handles } = await this.#hsm.run({ op: 'find', cls: 'private', label: IMPORT_KEY_LABEL });
    let n = 0;
    for (const h of handles) {
      const a = await this.#attrs(h);
      if (a.id.length !== 16 || Number(a.id.readBigUInt64BE(0)) > now) continue;
      n += await this.#destroyObjects([hex(a.id)]);
      await this.#emit({ type: 'import-key.expired', keyName: null, detail: { importKeyId: hex(a.id) } });
    }
    return n;
  }

  async #importKeyHandle(importKeyId: string): Promise<{ id: Buffer; attrs: ObjectAttributes }> {
    if (typeof importKeyId !== 'string' || !/^[0-9a-f]{32}$/.test(importKeyId))
      throw err('IMPORT_KEY_EXPIRED');
    const id = Buffer.from(importKeyId, 'hex');
    if (Number(id.readBigUInt64BE(0)) <= this.#clock()) throw err('IMPORT_KEY_EXPIRED');
    const { handles } = await this.#hsm.run({ op: 'find', cls: 'private', id, label: IMPORT_KEY_LABEL });
    if (handles.length !== 1) throw err('IMPORT_KEY_EXPIRED');
    return { id, attrs: await this.#attrs(handles[0]!) };
  }

  /**
   * BYOK step 2: unwraps the material inside the HSM as a sensitive, non-extractable
   * (unless `backupable`) token object; a new key (origin 'imported') or a new primary
   * version of an existing one. Tampered blobs and blobs for another import key fail
   * with IMPORT_BLOB_INVALID. AES and RSA material only: an EC private key unwraps
   * without its public point, which hyokd cannot then publish.
   */
  async importKey(input: ImportKeyInput): Promise<{ key: AdminKeyView; version: number }> {
    const name = checkName(input.name);
    const kind = checkKind(input.kind);
    if (kind === 'ec-p256') throw err('UNSUPPORTED', { params: { detail: 'EC key import' } });
    if (!Buffer.isBuffer(input.wrapped) || input.wrapped.length === 0) throw err('IMPORT_BLOB_INVALID');
    const newKey = input.newVersion !== true;
    const operations = newKey ? checkOperations(kind, input.operations) : undefined;
    const retentionDays = newKey ? checkRetentionDays(input.retentionDays) : 0;
    const tags = input.tags ?? {};
    validated(() => checkTags(tags));

    let parsed;
    try {
      parsed = parseImportBlob(input.wrapped);
    } catch (e) {
      throw err('IMPORT_BLOB_INVALID', { cause: e });
    }
    let hash: OaepHash;
    let direct = false;
    let payload: Buffer;
    if (parsed) {
      hash = parsed.hash;
      payload = parsed.payload;
      const want = hash === 'sha1' ? 'RSA_AES_KEY_WRAP_SHA1' : 'RSA_AES_KEY_WRAP_SHA256';
      if (input.wrapAlgorithm !== undefined && input.wrapAlgorithm !== want) throw err('IMPORT_BLOB_INVALID');
    } else {
      if (input.wrapAlgorithm === undefined)
        throw invalid('wrapAlgorithm is required for a blob without a header');
      payload = input.wrapped;
      hash = input.wrapAlgorithm === 'RSA_AES_KEY_WRAP_SHA1' ? 'sha1' : 'sha256';
      direct = input.wrapAlgorithm === 'RSA_OAEP_SHA256';
      if (direct && kind !== 'aes-256') throw invalid('RSA_OAEP_SHA256 wraps AES keys only');
    }
    const algo: ImportWrapAlgorithm = direct
      ? 'RSA_OAEP_SHA256'
      : hash === 'sha1'
        ? 'RSA_AES_KEY_WRAP_SHA1'
        : 'RSA_AES_KEY_WRAP_SHA256';
    if (!(await this.#importAlgorithms()).includes(algo)) {
      throw err('UNSUPPORTED', { params: { detail: `${algo} on this HSM` } });
    }
    const ik = await this.#importKeyHandle(input.importKeyId);
    if (parsed) {
      let fp: Buffer;
      try {
        fp = importKeyFingerprint(spkiFromAttributes(ik.attrs));
      } catch (e) {
        throw toHyokError(e);
      }
      if (!fp.equals(parsed.keyFingerprint)) throw err('IMPORT_BLOB_INVALID');
    }
    // AES-256 material under KWP is 40 bytes after the RSA part (modulus length).
    const rsaLen = ik.attrs.modulus?.length ?? 384;
    if (kind === 'aes-256' && !direct && payload.length !== rsaLen + 40) throw err('KEY_KIND_MISMATCH');

    return this.#locked(name, async () => {
      let existing: KeyRecord | null = await this.#store.getKey(name);
      if (newKey && existing) throw err('KEY_EXISTS');
      if (!newKey) {
        if (!existing) throw err('KEY_NOT_FOUND');
        if (existing.state === 'soft-deleted') throw err('KEY_DELETED');
        if (existing.kind !== kind) throw err('KEY_KIND_MISMATCH');
      }
      const ops = operations ?? existing!.operations;
      const versionNo = newKey ? 1 : ((await this.#store.listVersions(name)).at(-1)?.version ?? 0) + 1;
      const id = newCkaId();
      const ckaId = hex(id);
      const label = versionLabel(name, versionNo);
      const intent = await this.#store.beginIntent('import', name, { ckaId, kind });
      let spki: Buffer | null = null;
      try {
        const { handle } = await this.#hsm.run({
          op: 'unwrapKey',
          mechanism: direct ? 'RSA_PKCS_OAEP' : 'RSA_AES_KEY_WRAP',
          unwrappingKey: { id: ik.id, cls: 'private' },
          wrapped: payload,
          hash,
          keyType: kind === 'aes-256' ? 'aes' : 'rsa',
          spec: {
            id,
            label,
            token: true,
            extractable: input.backupable === true,
            usage: keyUsageFor(kind, ops),
          },
        });
        const a = await this.#attrs(handle);
        const ok =
          kind === 'aes-256'
            ? a.keyType === 'aes' && aesLenOk(a)
            : a.keyType === 'rsa' && a.modulus !== undefined && a.modulus.length === 384;
        if (!ok) throw err('KEY_KIND_MISMATCH');
        if (kind !== 'aes-256') spki = spkiFromAttributes(a);
      } catch (e) {
        await this.#rollback(intent, [ckaId]);
        throw e instanceof HyokError ? e : blobError(e);
      }
      crashPoint('import');
      try {
        if (newKey) {
          existing = await this.#store.createKey(
            {
              name,
              kind,
              operations: ops,
              origin: 'imported',
              retentionDays,
              purgeProtection: input.purgeProtection === true,
              tags,
              firstVersion: { ckaId, hsmLabel: label, publicKeySpki: spki },
            },
            { completeIntent: intent },
          );
          return { key: await this.#view(existing), version: 1 };
        }
        const v = await this.#store.addVersion(
          name,
          { ckaId, hsmLabel: label, publicKeySpki: spki },
          { completeIntent: intent, makePrimary: true },
        );
        return { key: await this.#view(await this.#mustKey(name)), version: v.version };
      } catch (e) {
        await this.#rollback(intent, [ckaId]);
        throw fromStore(e);
      }
    });
  }

  // ---------------------------------------------------------------------------------
  // Security domain, backup and restore
  // ---------------------------------------------------------------------------------

  /**
   * Binds this store to a new security domain (random id) and creates its backup key
   * (AES-256, token, sensitive, never extractable) on the token. Idempotent: an existing
   * domain is returned as is.
   */
  async initDomain(): Promise<{ domainId: string; backupKeyId: string }> {
    const cur = await this.#store.getDomain();
    if (cur) return { domainId: cur.domainId, backupKeyId: String(cur.metadata.backupKeyId ?? '') };
    const domainId = randomUUID();
    const id = newCkaId();
    const intent = await this.#store.beginIntent('domain', null, { ckaId: hex(id), domainId });
    try {
      await this.#hsm.run({
        op: 'generateKey',
        keyBits: 256,
        spec: {
          id,
          label: DOMAIN_KEY_LABEL,
          token: true,
          extractable: false,
          usage: { wrap: true, unwrap: true, encrypt: true, decrypt: true },
        },
      });
    } catch (e) {
      await this.#rollback(intent, [hex(id)]);
      throw toHyokError(e);
    }
    crashPoint('domain');
    try {
      await this.#store.initDomain(domainId, { backupKeyId: hex(id) });
      await this.#store.completeIntent(intent);
    } catch (e) {
      await this.#rollback(intent, [hex(id)]);
      throw fromStore(e);
    }
    return { domainId, backupKeyId: hex(id) };
  }

  /**
   * A second hyokd (another store, an HSM that already holds the domain backup key with
   * this CKA_ID) joins an existing domain.
   *
   * How the domain backup key reaches the second HSM: hyokd does not export it. It is
   * created CKA_EXTRACTABLE=false, and C_WrapKey (which any export under another HSM's
   * import key would need) refuses non-extractable keys; making it extractable would let
   * anyone with a session on the token wrap it out under a key of their choosing, and the
   * backend has no CKA_WRAP_WITH_TRUSTED/CKA_TRUSTED templates to narrow that. So there is
   * no `exportDomainKeyFor`. Instead: HSMs of one cluster (Luna HA group, CloudHSM,
   * nShield Security World) replicate the object with its CKA_ID; separate HSMs use the
   * vendor's own secure cloning/backup of that one object (for SoftHSM2 in tests: a copy
   * of the token directory). Then call joinDomain(domainId, backupKeyId) on the second
   * daemon with the values initDomain returned on the first.
   */
  async joinDomain(
    domainId: string,
    backupKeyId: string,
  ): Promise<{ domainId: string; backupKeyId: string }> {
    if (!/^(?:[0-9a-f]{2})+$/.test(backupKeyId)) throw invalid('backupKeyId must be lowercase hex');
    if (await this.#store.getDomain()) throw err('DOMAIN_BOUND');
    const handles = await this.#findKeyObjects([backupKeyId], ['secret']);
    if (handles.length !== 1) throw err('KEY_NOT_FOUND');
    await stored(() => this.#store.initDomain(domainId, { backupKeyId }));
    return { domainId, backupKeyId };
  }

  async #domain(): Promise<{ domainId: string; key: KeyRef } | null> {
    const d = await this.#store.getDomain();
    const id = d?.metadata.backupKeyId;
    if (!d || typeof id !== 'string' || id.length === 0) return null;
    return { domainId: d.domainId, key: { id: Buffer.from(id, 'hex'), cls: 'secret' } };
  }

  /** All versions wrapped under the domain backup key, metadata sealed with it. Needs backupable keys. */
  async backupKey(name: string): Promise<{ backup: Buffer; securityDomain: string }> {
    checkName(name);
    const domain = await this.#domain();
    if (!domain) throw err('DOMAIN_NOT_BOUND');
    return this.#locked(name, async () => {
      const key = await this.#mustLive(name);
      const versions = await this.#store.listVersions(name);
      const res = await this.#hsm.batch(
        versions.map((v) => ({
          op: 'wrapKey' as const,
          mechanism: 'AES_KEY_WRAP_PAD' as const,
          wrappingKey: domain.key,
          key: workRef(key.kind, v.ckaId),
        })),
      );
      const wrapped: Buffer[] = [];
      for (const r of res) {
        if (!r.ok) {
          if (r.error.code === 'CKR_KEY_UNEXTRACTABLE' || r.error.code === 'CKR_KEY_NOT_WRAPPABLE') {
            throw err('OPERATION_NOT_ALLOWED', { metadata: { reason: 'not-backupable' }, cause: r.error });
          }
          throw toHyokError(r.error);
        }
        wrapped.push((r as unknown as { wrapped: Buffer }).wrapped);
      }
      const meta: BackupMetadata = {
        name,
        kind: key.kind,
        operations: key.operations,
        state: key.state === 'disabled' ? 'disabled' : 'enabled',
        tags: key.tags,
        retentionDays: key.retentionDays,
        purgeProtection: key.purgeProtection,
        rotation: key.rotation,
        primaryVersion: key.primaryVersion ?? versions.at(-1)!.version,
        createdAt: key.createdAt,
        backedUpAt: this.#clock(),
        versions: versions.map((v) => ({
          version: v.version,
          state: v.state,
          createdAt: v.createdAt,
          publicKeySpki: v.publicKeySpki ? v.publicKeySpki.toString('base64') : null,
        })),
      };
      const sealed = await this.#hsm.run({
        op: 'encrypt',
        key: domain.key,
        plaintext: Buffer.from(JSON.stringify(meta), 'utf8'),
        aad: backupAad(domain.domainId, wrapped),
      });
      return {
        backup: encodeBackup({
          domainId: domain.domainId,
          wrapped,
          iv: sealed.iv,
          sealed: sealed.ciphertext,
        }),
        securityDomain: domain.domainId,
      };
    });
  }

  /**
   * Restores a BackupKey blob under its original name (origin 'restored'), versions as
   * sensitive (still backupable) token objects with fresh CKA_IDs. DOMAIN_MISMATCH for
   * another domain; DOWNGRADE when a key of that name has a longer history; KEY_EXISTS
   * when the name is otherwise taken; IMPORT_BLOB_INVALID for a tampered blob.
   */
  async restoreKey(blob: Buffer): Promise<AdminKeyView> {
    let env;
    try {
      env = decodeBackup(blob);
    } catch (e) {
      throw err('IMPORT_BLOB_INVALID', { cause: e });
    }
    const domain = await this.#domain();
    if (!domain || domain.domainId !== env.domainId) throw err('DOMAIN_MISMATCH');
    let meta: BackupMetadata;
    try {
      const { plaintext } = await this.#hsm.run({
        op: 'decrypt',
        key: domain.key,
        iv: env.iv,
        ciphertext: env.sealed,
        aad: backupAad(env.domainId, env.wrapped),
      });
      meta = parseBackupMetadata(plaintext.toString('utf8'), env.wrapped.length);
    } catch (e) {
      throw blobError(
        e instanceof HsmError
          ? e
          : new HsmError({ code: 'CKR_DATA_INVALID', rv: 0x20, retriable: false, message: String(e) }),
      );
    }
    const name = checkName(meta.name);
    const kind = checkKind(meta.kind);
    return this.#locked(name, async () => {
      const existing = await this.#store.getKey(name);
      if (existing) {
        const have = await this.#store.listVersions(name);
        const lastHave = have.at(-1);
        const lastBlob = meta.versions.at(-1)!;
        if (
          lastHave &&
          (lastHave.version > lastBlob.version ||
            (lastHave.version === lastBlob.version && lastHave.createdAt > lastBlob.createdAt))
        ) {
          throw err('DOWNGRADE');
        }
        throw err('KEY_EXISTS');
      }
      const ids = meta.versions.map(() => newCkaId());
      const ckaIds = ids.map(hex);
      const intent = await this.#store.beginIntent('restore', name, { ckaIds, kind });
      try {
        const res = await this.#hsm.batch(
          env.wrapped.map((w, i) => ({
            op: 'unwrapKey' as const,
            mechanism: 'AES_KEY_WRAP_PAD' as const,
            unwrappingKey: domain.key,
            wrapped: w,
            keyType:
              kind === 'aes-256'
                ? ('aes' as const)
                : kind === 'rsa-3072'
                  ? ('rsa' as const)
                  : ('ec' as const),
            spec: {
              id: ids[i]!,
              label: versionLabel(name, meta.versions[i]!.version),
              token: true,
              extractable: true,
              usage: keyUsageFor(kind, meta.operations),
            },
          })),
        );
        for (const r of res) if (!r.ok) throw r.error;
      } catch (e) {
        await this.#rollback(intent, ckaIds);
        throw blobError(e);
      }
      crashPoint('restore');
      try {
        await this.#finishRestore(name, kind, meta, ckaIds);
        await this.#store.completeIntent(intent);
      } catch (e) {
        await this.#undoRestore(name, ckaIds).catch(() => undefined);
        await this.#rollback(intent, ckaIds);
        throw fromStore(e);
      }
      return this.#view(await this.#mustKey(name));
    });
  }

  async #finishRestore(name: string, kind: KeyKind, meta: BackupMetadata, ckaIds: string[]): Promise<void> {
    const vers = meta.versions;
    const spki = (i: number) =>
      vers[i]!.publicKeySpki ? Buffer.from(vers[i]!.publicKeySpki!, 'base64') : null;
    // Disabled and unprotected until every version is in, so a crash leaves nothing usable
    // and nothing reconcile cannot remove.
    await this.#store.createKey({
      name,
      kind,
      operations: meta.operations,
      origin: 'restored',
      retentionDays: meta.retentionDays,
      tags: meta.tags,
      rotation: meta.rotation,
      state: 'disabled',
      firstVersion: {
        ckaId: ckaIds[0]!,
        hsmLabel: versionLabel(name, vers[0]!.version),
        publicKeySpki: spki(0),
        state: vers[0]!.state,
      },
    });
    for (let i = 1; i < vers.length; i++) {
      await this.#store.addVersion(
        name,
        {
          ckaId: ckaIds[i]!,
          hsmLabel: versionLabel(name, vers[i]!.version),
          publicKeySpki: spki(i),
          state: vers[i]!.state,
        },
        { makePrimary: false },
      );
    }
    // Version numbers are reassigned 1..n by the store; backups hold every version from 1.
    await this.#store.setPrimaryVersion(name, meta.primaryVersion);
    if (meta.state === 'enabled') await this.#store.setKeyState(name, 'enabled');
    if (meta.purgeProtection) await this.#store.setPurgeProtection(name, true);
  }

  async #undoRestore(name: string, ckaIds: string[]): Promise<boolean> {
    const key = await this.#store.getKey(name);
    if (!key) return false;
    const versions = await this.#store.listVersions(name);
    if (!versions.some((v) => ckaIds.includes(v.ckaId))) return false;
    if (key.state !== 'soft-deleted') await this.#store.softDelete(name);
    await this.#store.removeKey(name);
    return true;
  }

  // ---------------------------------------------------------------------------------
  // Crash reconciliation
  // ---------------------------------------------------------------------------------

  /** Finishes or undoes every interrupted change (see the top of this file). Call before serving. */
  async reconcile(): Promise<ReconcileAction[]> {
    const out: ReconcileAction[] = [];
    for (const intent of await this.#store.listOpenIntents()) {
      let action: ReconcileAction;
      try {
        action = await this.#reconcileOne(intent);
      } catch (e) {
        this.#log?.error(
          { err: e, intentId: intent.id, kind: intent.kind },
          'reconcile failed for an intent',
        );
        action = {
          intentId: intent.id,
          kind: intent.kind,
          keyName: intent.keyName,
          action: 'left-open',
          detail: 'error',
        };
      }
      out.push(action);
      await this.#emit({
        type: 'intent.reconciled',
        keyName: intent.keyName,
        detail: { intent: intent.kind, action: action.action },
      });
    }
    return out;
  }

  async #reconcileOne(intent: IntentRecord): Promise<ReconcileAction> {
    const p = (intent.payload ?? {}) as { ckaId?: string; ckaIds?: string[] };
    const base = { intentId: intent.id, kind: intent.kind, keyName: intent.keyName };
    const done = async (action: string, detail?: string): Promise<ReconcileAction> => {
      await this.#store.completeIntent(intent.id);
      return detail === undefined ? { ...base, action } : { ...base, action, detail };
    };
    switch (intent.kind) {
      case 'create':
      case 'rotate':
      case 'import': {
        if (!p.ckaId) return done('cleared', 'no object id');
        if (await this.#store.getVersionByCkaId(p.ckaId)) return done('cleared', 'already committed');
        const n = await this.#destroyObjects([p.ckaId]);
        return done('rolled-back', `${n} object(s) destroyed`);
      }
      case 'import-key': {
        const n = p.ckaId ? await this.#destroyObjects([p.ckaId]) : 0;
        return done('rolled-back', `${n} object(s) destroyed`);
      }
      case 'domain': {
        const d = await this.#store.getDomain();
        if (d && d.metadata.backupKeyId === p.ckaId) return done('completed');
        const n = p.ckaId ? await this.#destroyObjects([p.ckaId]) : 0;
        return done('rolled-back', `${n} object(s) destroyed`);
      }
      case 'purge': {
        const ids = p.ckaIds ?? [];
        const n = await this.#destroyObjects(ids);
        const name = intent.keyName;
        const key = name ? await this.#store.getKey(name) : null;
        if (!key || !name) return done('completed', `${n} object(s) destroyed`);
        const versions = await this.#store.listVersions(name);
        if (key.state === 'soft-deleted' && versions.every((v) => ids.includes(v.ckaId))) {
          await this.#store.removeKey(name, { completeIntent: intent.id });
          return { ...base, action: 'completed', detail: `${n} object(s) destroyed, metadata removed` };
        }
        return done('cleared', 'the key changed since; objects destroyed only');
      }
      case 'restore': {
        const ids = p.ckaIds ?? [];
        const name = intent.keyName;
        if (name) {
          const key = await this.#store.getKey(name);
          if (key?.purgeProtection) {
            const versions = await this.#store.listVersions(name);
            if (versions.length === ids.length && versions.every((v) => ids.includes(v.ckaId))) {
              return done('completed', 'restore had reached its last step');
            }
          }
          await this.#undoRestore(name, ids);
        }
        const n = await this.#destroyObjects(ids);
        return done('rolled-back', `${n} object(s) destroyed`);
      }
      case 'adopt':
        // The object belongs to the key owner: never destroyed. A CKA_ID assigned by an
        // interrupted adopt is harmless; the adopt can simply be repeated.
        return done('cleared');
      default:
        this.#log?.warn({ intentId: intent.id, kind: intent.kind }, 'unknown intent kind left open');
        return { ...base, action: 'left-open', detail: 'unknown kind' };
    }
  }
}
