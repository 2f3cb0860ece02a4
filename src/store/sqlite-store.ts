// The embedded metadata store: one SQLite file in the data folder, via better-sqlite3.
//
// - WAL journal: readers never block the writer, and a second process (or a CLI run
//   beside the daemon) can open the same file.
// - synchronous=FULL by default: metadata writes are rare (admin operations, not the
//   wrap/unwrap path), and losing a committed row after power loss can orphan an HSM
//   object or forget a version that wrapped DEKs still name. FULL costs an fsync per
//   commit, which these rates do not notice. NORMAL is allowed for tests/benchmarks.
// - busy timeout: writers wait (default 5 s) for a lock instead of failing at once.
// - every change runs in a BEGIN IMMEDIATE transaction: it takes the write lock before
//   its first read, so a read-then-write cannot fail halfway on a lock upgrade.
// - migrations (migrations.ts) run in one immediate transaction at open; a schema newer
//   than this build knows is refused with SCHEMA_TOO_NEW.
// - getKeyWithVersion (the wrap/unwrap hot path) is served from a bounded in-memory cache
//   (key-read-cache.ts) of frozen results, "not found" included. Every write goes through
//   #tx, which empties the cache when the transaction ends, committed or not, so our own
//   changes show on the very next call. Commits by other connections to the same file
//   (a CLI, an operator's sqlite3 shell) are detected with PRAGMA data_version, read at
//   most once per event-loop turn: they show from the next turn on. Nothing cached
//   depends on the time (expiry is judged by the caller from rotation.expiresAt).

import { randomUUID } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { StoreCodes, StoreError } from './errors.js';
import { KeyReadCache } from './key-read-cache.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from './migrations.js';
import type {
  Approval,
  CommitOptions,
  DomainRecord,
  IntentRecord,
  KeyFilter,
  KeyRecord,
  KeyVersionRecord,
  MetadataStore,
  NewKey,
  NewPendingRequest,
  NewVersion,
  PendingRequestPatch,
  PendingRequestRecord,
  PolicyDocumentRecord,
  RequestState,
  RotationPolicy,
  Tags,
  VersionState,
} from './types.js';
import { REQUEST_STATES } from './types.js';
import {
  checkCkaId,
  checkKeyName,
  checkNewKey,
  checkNewVersion,
  checkRotation,
  checkTags,
} from './validate.js';

type Db = Database.Database;
type Statement = Database.Statement;

export const STORE_FILE_NAME = 'metadata.sqlite';
const DAY_MS = 86_400_000;

export interface SqliteStoreOptions {
  /** Path of the database file (see `storePathIn`), or ':memory:' for a throwaway store. */
  path: string;
  /** Default 'FULL' (see the top of this file). */
  synchronous?: 'FULL' | 'NORMAL';
  /** How long a writer waits for the lock, ms. Default 5000. */
  busyTimeoutMs?: number;
  /** Milliseconds since the epoch. Default Date.now. */
  clock?: () => number;
}

/** The store file inside a data folder (HYOKD_HOME). */
export function storePathIn(dataDir: string): string {
  return join(dataDir, STORE_FILE_NAME);
}

/** Opens (creating if needed) and migrates the store. Throws SCHEMA_TOO_NEW for a newer file. */
export function openSqliteStore(options: SqliteStoreOptions): SqliteMetadataStore {
  createPrivate(options.path);
  const db = new Database(options.path, { timeout: options.busyTimeoutMs ?? 5000 });
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    // ':memory:' (tests of upper layers) cannot use WAL; every real file must.
    if (String(mode).toLowerCase() !== 'wal' && options.path !== ':memory:') {
      throw new StoreError(
        StoreCodes.FAILED_PRECONDITION,
        `could not switch the store to WAL (got ${String(mode)})`,
      );
    }
    db.pragma(`synchronous = ${options.synchronous === 'NORMAL' ? 'NORMAL' : 'FULL'}`);
    db.pragma('foreign_keys = ON');
    migrate(db, options.clock ?? Date.now);
  } catch (err) {
    db.close();
    throw err;
  }
  return new SqliteMetadataStore(db, options.clock ?? Date.now);
}

/**
 * A new store file is created empty with mode 0600 before SQLite opens it (an empty file
 * is an empty database), so it is not world-readable under the usual umask; SQLite gives
 * its -wal and -shm files the database file's mode. An existing file keeps its mode.
 */
function createPrivate(path: string): void {
  if (path === ':memory:' || path === '' || path.startsWith('file:')) return;
  try {
    closeSync(openSync(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600));
  } catch {
    // It exists (kept as it is), or cannot be made here: SQLite's open reports that.
  }
}

/** Applies pending migrations; exported for tests and the CLI (`hyokd store migrate`). */
export function migrate(db: Db, clock: () => number = Date.now): number {
  const run = db.transaction((): number => {
    db.exec(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version INTEGER PRIMARY KEY NOT NULL,
         name TEXT NOT NULL,
         applied_at INTEGER NOT NULL
       )`,
    );
    const row = db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number | null };
    const current = row.v ?? 0;
    if (current > LATEST_SCHEMA_VERSION) {
      throw new StoreError(
        StoreCodes.SCHEMA_TOO_NEW,
        `the metadata store is at schema version ${current}, newer than this hyokd knows (${LATEST_SCHEMA_VERSION}); ` +
          'upgrade hyokd or restore a backup',
      );
    }
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      db.exec(m.sql);
      record.run(m.version, m.name, clock());
    }
    return LATEST_SCHEMA_VERSION;
  });
  return run.immediate();
}

interface KeyRow {
  name: string;
  kind: string;
  operations: string;
  state: string;
  state_before_delete: string | null;
  created_at: number;
  updated_at: number;
  tags: string;
  retention_days: number;
  purge_protection: number;
  deleted_at: number | null;
  scheduled_purge_at: number | null;
  rotation_period_days: number | null;
  expires_at: number | null;
  notify_before_days: number | null;
  primary_version: number | null;
  origin: string;
}

interface VersionRow {
  key_name: string;
  version: number;
  cka_id: string;
  hsm_label: string;
  state: string;
  created_at: number;
  public_key_spki: Buffer | null;
}

/**
 * A key row joined with one version row (LEFT JOIN: the version columns are null when
 * there is no such version), read in raw mode (an array per row, columns in this
 * order): cheaper than a row object whose property names are built per column.
 */
const KEY_WITH_VERSION =
  'SELECT k.name, k.kind, k.operations, k.state, k.state_before_delete, k.created_at, ' +
  'k.updated_at, k.tags, k.retention_days, k.purge_protection, k.deleted_at, ' +
  'k.scheduled_purge_at, k.rotation_period_days, k.expires_at, k.notify_before_days, ' +
  'k.primary_version, k.origin, ' +
  'v.version, v.cka_id, v.hsm_label, v.state, v.created_at, v.public_key_spki ' +
  'FROM keys k LEFT JOIN key_versions v ON v.key_name = k.name AND';

type Cell = string | number | Buffer | null;

function keyWithVersionFromRaw(r: Cell[]): { key: KeyRecord; version: KeyVersionRecord | null } {
  const key: KeyRow = {
    name: r[0] as string,
    kind: r[1] as string,
    operations: r[2] as string,
    state: r[3] as string,
    state_before_delete: r[4] as string | null,
    created_at: r[5] as number,
    updated_at: r[6] as number,
    tags: r[7] as string,
    retention_days: r[8] as number,
    purge_protection: r[9] as number,
    deleted_at: r[10] as number | null,
    scheduled_purge_at: r[11] as number | null,
    rotation_period_days: r[12] as number | null,
    expires_at: r[13] as number | null,
    notify_before_days: r[14] as number | null,
    primary_version: r[15] as number | null,
    origin: r[16] as string,
  };
  const version =
    r[17] === null
      ? null
      : toVersion({
          key_name: key.name,
          version: r[17] as number,
          cka_id: r[18] as string,
          hsm_label: r[19] as string,
          state: r[20] as string,
          created_at: r[21] as number,
          public_key_spki: r[22] as Buffer | null,
        });
  return { key: toKey(key), version };
}

interface RequestRow {
  id: string;
  op: string;
  key_name: string | null;
  requester: string;
  created_at: number;
  expires_at: number;
  state: string;
  approvals: string;
  payload: string;
}

function toKey(r: KeyRow): KeyRecord {
  const rotation: RotationPolicy = {};
  if (r.rotation_period_days !== null) rotation.rotationPeriodDays = r.rotation_period_days;
  if (r.expires_at !== null) rotation.expiresAt = r.expires_at;
  if (r.notify_before_days !== null) rotation.notifyBeforeDays = r.notify_before_days;
  return {
    name: r.name,
    kind: r.kind as KeyRecord['kind'],
    operations: JSON.parse(r.operations) as KeyRecord['operations'],
    state: r.state as KeyRecord['state'],
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    tags: JSON.parse(r.tags) as Tags,
    retentionDays: r.retention_days,
    purgeProtection: r.purge_protection === 1,
    deletedAt: r.deleted_at,
    scheduledPurgeAt: r.scheduled_purge_at,
    rotation,
    primaryVersion: r.primary_version,
    origin: r.origin as KeyRecord['origin'],
  };
}

function toVersion(r: VersionRow): KeyVersionRecord {
  return {
    keyName: r.key_name,
    version: r.version,
    ckaId: r.cka_id,
    hsmLabel: r.hsm_label,
    state: r.state as VersionState,
    createdAt: r.created_at,
    publicKeySpki: r.public_key_spki === null ? null : Buffer.from(r.public_key_spki),
  };
}

function toRequest(r: RequestRow): PendingRequestRecord {
  return {
    id: r.id,
    op: r.op,
    keyName: r.key_name,
    requester: r.requester,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    state: r.state as RequestState,
    approvals: JSON.parse(r.approvals) as Approval[],
    payload: JSON.parse(r.payload) as unknown,
  };
}

/** Maps SQLite constraint failures that slipped past the TypeScript checks to store codes. */
function mapSqliteError(err: unknown): unknown {
  if (err instanceof StoreError || !(err instanceof Database.SqliteError)) return err;
  const code = err.code;
  if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') {
    return new StoreError(StoreCodes.ALREADY_EXISTS, `already exists (${err.message})`, { cause: err });
  }
  if (code === 'SQLITE_CONSTRAINT_TRIGGER') {
    return new StoreError(StoreCodes.FAILED_PRECONDITION, err.message, { cause: err });
  }
  if (code.startsWith('SQLITE_CONSTRAINT')) {
    return new StoreError(StoreCodes.INVALID_ARGUMENT, `constraint failed (${err.message})`, { cause: err });
  }
  return err;
}

function json(value: unknown, what: string): string {
  const text = JSON.stringify(value === undefined ? null : value);
  if (text === undefined)
    throw new StoreError(StoreCodes.INVALID_ARGUMENT, `${what} is not JSON-serializable`);
  return text;
}

function notFoundKey(name: string): StoreError {
  return new StoreError(StoreCodes.NOT_FOUND, `key "${name}" not found`);
}

export class SqliteMetadataStore implements MetadataStore {
  readonly #db: Db;
  readonly #clock: () => number;
  /** Prepared once per SQL text: preparing costs more than running on the hot read path. */
  readonly #statements = new Map<string, Statement>();
  /** getKeyWithVersion results; emptied by every #tx and by other connections' commits. */
  readonly #keyCache: KeyReadCache;

  /**
   * Use openSqliteStore. The store must be the only user of `db`: a write through the
   * same connection elsewhere would neither clear the key read cache nor move
   * data_version (which only counts other connections' commits).
   */
  constructor(db: Db, clock: () => number) {
    this.#db = db;
    this.#clock = clock;
    const dataVersion = db.prepare('PRAGMA data_version').pluck();
    this.#keyCache = new KeyReadCache(() => dataVersion.get() as number);
  }

  /** A statement in raw mode (rows as arrays); its SQL must not be used through #stmt. */
  #rawStmt(sql: string): Statement {
    let s = this.#statements.get(sql);
    if (s === undefined) {
      s = this.#db.prepare(sql).raw(true);
      this.#statements.set(sql, s);
    }
    return s;
  }

  #stmt(sql: string): Statement {
    let s = this.#statements.get(sql);
    if (s === undefined) {
      s = this.#db.prepare(sql);
      this.#statements.set(sql, s);
    }
    return s;
  }

  /**
   * Runs `fn` in one BEGIN IMMEDIATE transaction; any throw rolls everything back. The
   * ONLY way this class writes: it empties the key read cache however the transaction
   * ends (a new write path must come through here, or clear the cache itself).
   */
  #tx<T>(fn: () => T): T {
    if (!this.#db.open) throw new StoreError(StoreCodes.CLOSED, 'the metadata store is closed');
    try {
      return this.#db.transaction(fn).immediate();
    } catch (err) {
      throw mapSqliteError(err);
    } finally {
      this.#keyCache.clear();
    }
  }

  #read<T>(fn: () => T): T {
    if (!this.#db.open) throw new StoreError(StoreCodes.CLOSED, 'the metadata store is closed');
    return fn();
  }

  #keyRow(name: string): KeyRow | undefined {
    return this.#stmt('SELECT * FROM keys WHERE name = ?').get(name) as KeyRow | undefined;
  }

  #mustKey(name: string): KeyRow {
    const row = this.#keyRow(name);
    if (!row) throw notFoundKey(name);
    return row;
  }

  #mustLive(name: string): KeyRow {
    const row = this.#mustKey(name);
    if (row.state === 'soft-deleted') {
      throw new StoreError(StoreCodes.FAILED_PRECONDITION, `key "${name}" is soft-deleted; recover it first`);
    }
    return row;
  }

  #completeIntentIn(opts: CommitOptions | undefined): void {
    if (opts?.completeIntent === undefined) return;
    const res = this.#stmt('DELETE FROM intents WHERE id = ?').run(opts.completeIntent);
    if (res.changes !== 1) {
      throw new StoreError(StoreCodes.NOT_FOUND, `intent ${opts.completeIntent} not found`);
    }
  }

  #insertVersion(keyName: string, version: number, v: NewVersion, now: number): void {
    if (this.#stmt('SELECT 1 FROM key_versions WHERE cka_id = ?').get(v.ckaId)) {
      throw new StoreError(StoreCodes.ALREADY_EXISTS, `a key version with CKA_ID ${v.ckaId} already exists`);
    }
    this.#stmt(
      `INSERT INTO key_versions (key_name, version, cka_id, hsm_label, state, created_at, public_key_spki)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(keyName, version, v.ckaId, v.hsmLabel, v.state ?? 'enabled', now, v.publicKeySpki ?? null);
  }

  async createKey(key: NewKey, opts?: CommitOptions): Promise<KeyRecord> {
    checkNewKey(key);
    return this.#tx(() => {
      if (this.#keyRow(key.name)) {
        throw new StoreError(StoreCodes.ALREADY_EXISTS, `key "${key.name}" already exists`);
      }
      const now = this.#clock();
      const r = key.rotation ?? {};
      this.#stmt(
        `INSERT INTO keys (name, kind, operations, state, created_at, updated_at, tags, retention_days,
             purge_protection, rotation_period_days, expires_at, notify_before_days, primary_version, origin)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        key.name,
        key.kind,
        JSON.stringify(key.operations),
        key.state ?? 'enabled',
        now,
        now,
        JSON.stringify(key.tags ?? {}),
        key.retentionDays,
        key.purgeProtection ? 1 : 0,
        r.rotationPeriodDays ?? null,
        r.expiresAt ?? null,
        r.notifyBeforeDays ?? null,
        key.firstVersion ? 1 : null,
        key.origin,
      );
      if (key.firstVersion) this.#insertVersion(key.name, 1, key.firstVersion, now);
      this.#completeIntentIn(opts);
      return toKey(this.#mustKey(key.name));
    });
  }

  async getKey(name: string): Promise<KeyRecord | null> {
    return this.#read(() => {
      const row = this.#keyRow(name);
      return row ? toKey(row) : null;
    });
  }

  async listKeys(filter: KeyFilter = {}): Promise<KeyRecord[]> {
    return this.#read(() => {
      const where: string[] = [];
      const args: unknown[] = [];
      if (filter.state !== undefined) {
        where.push('state = ?');
        args.push(filter.state);
      }
      if (filter.namePrefix !== undefined && filter.namePrefix !== '') {
        // substr comparison, not LIKE: names may hold '_' which LIKE treats as a wildcard.
        where.push('substr(name, 1, ?) = ?');
        args.push(filter.namePrefix.length, filter.namePrefix);
      }
      const sql = `SELECT * FROM keys ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY name`;
      return (this.#stmt(sql).all(...args) as KeyRow[]).map(toKey);
    });
  }

  async setKeyState(name: string, state: 'enabled' | 'disabled'): Promise<KeyRecord> {
    if (state !== 'enabled' && state !== 'disabled') {
      throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'state must be enabled or disabled (use softDelete)');
    }
    return this.#tx(() => {
      this.#mustLive(name);
      this.#stmt('UPDATE keys SET state = ?, updated_at = ? WHERE name = ?').run(state, this.#clock(), name);
      return toKey(this.#mustKey(name));
    });
  }

  async setTags(name: string, tags: Tags): Promise<KeyRecord> {
    checkTags(tags);
    return this.#tx(() => {
      this.#mustLive(name);
      this.#stmt('UPDATE keys SET tags = ?, updated_at = ? WHERE name = ?').run(
        JSON.stringify(tags),
        this.#clock(),
        name,
      );
      return toKey(this.#mustKey(name));
    });
  }

  async setRotationPolicy(name: string, rotation: RotationPolicy): Promise<KeyRecord> {
    checkRotation(rotation);
    return this.#tx(() => {
      this.#mustLive(name);
      this.#stmt(
        `UPDATE keys SET rotation_period_days = ?, expires_at = ?, notify_before_days = ?, updated_at = ?
           WHERE name = ?`,
      ).run(
        rotation.rotationPeriodDays ?? null,
        rotation.expiresAt ?? null,
        rotation.notifyBeforeDays ?? null,
        this.#clock(),
        name,
      );
      return toKey(this.#mustKey(name));
    });
  }

  async setPurgeProtection(name: string, on: boolean): Promise<KeyRecord> {
    if (typeof on !== 'boolean')
      throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'purge protection is a boolean');
    return this.#tx(() => {
      const row = this.#mustKey(name);
      if (row.purge_protection === 1 && !on) {
        throw new StoreError(
          StoreCodes.FAILED_PRECONDITION,
          `purge protection on "${name}" cannot be turned off`,
        );
      }
      if (row.purge_protection === 0 && on) {
        this.#stmt('UPDATE keys SET purge_protection = 1, updated_at = ? WHERE name = ?').run(
          this.#clock(),
          name,
        );
      }
      return toKey(this.#mustKey(name));
    });
  }

  async softDelete(name: string): Promise<KeyRecord> {
    return this.#tx(() => {
      const row = this.#mustLive(name);
      const now = this.#clock();
      this.#stmt(
        `UPDATE keys SET state = 'soft-deleted', state_before_delete = ?, deleted_at = ?,
             scheduled_purge_at = ?, updated_at = ? WHERE name = ?`,
      ).run(row.state, now, now + row.retention_days * DAY_MS, now, name);
      return toKey(this.#mustKey(name));
    });
  }

  async recover(name: string): Promise<KeyRecord> {
    return this.#tx(() => {
      const row = this.#mustKey(name);
      if (row.state !== 'soft-deleted') {
        throw new StoreError(StoreCodes.FAILED_PRECONDITION, `key "${name}" is not deleted`);
      }
      this.#stmt(
        `UPDATE keys SET state = state_before_delete, state_before_delete = NULL, deleted_at = NULL,
             scheduled_purge_at = NULL, updated_at = ? WHERE name = ?`,
      ).run(this.#clock(), name);
      return toKey(this.#mustKey(name));
    });
  }

  async removeKey(name: string, opts?: CommitOptions): Promise<void> {
    this.#tx(() => {
      const row = this.#mustKey(name);
      if (row.state !== 'soft-deleted') {
        throw new StoreError(
          StoreCodes.FAILED_PRECONDITION,
          `key "${name}" must be soft-deleted before purge`,
        );
      }
      if (row.purge_protection === 1 && this.#clock() < (row.scheduled_purge_at ?? Infinity)) {
        throw new StoreError(
          StoreCodes.FAILED_PRECONDITION,
          `key "${name}" has purge protection; it can be purged from ${new Date(row.scheduled_purge_at ?? 0).toISOString()}`,
        );
      }
      this.#stmt('DELETE FROM keys WHERE name = ?').run(name);
      this.#completeIntentIn(opts);
    });
  }

  async listDueForPurge(at: number): Promise<KeyRecord[]> {
    return this.#read(() =>
      (
        this.#stmt(
          `SELECT * FROM keys WHERE state = 'soft-deleted' AND scheduled_purge_at <= ?
             ORDER BY scheduled_purge_at, name`,
        ).all(at) as KeyRow[]
      ).map(toKey),
    );
  }

  async addVersion(
    keyName: string,
    version: NewVersion,
    opts?: CommitOptions & { makePrimary?: boolean },
  ): Promise<KeyVersionRecord> {
    checkNewVersion(version);
    return this.#tx(() => {
      this.#mustLive(keyName);
      const now = this.#clock();
      const { n } = this.#stmt(
        'SELECT coalesce(max(version), 0) + 1 AS n FROM key_versions WHERE key_name = ?',
      ).get(keyName) as { n: number };
      const makePrimary = opts?.makePrimary ?? true;
      if (makePrimary && version.state === 'disabled') {
        throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'a disabled version cannot be made primary');
      }
      // The key row is updated first on purpose: if the version insert fails, the
      // transaction must take this update back with it.
      this.#stmt(
        `UPDATE keys SET updated_at = ?, primary_version = CASE WHEN ? THEN ? ELSE primary_version END
           WHERE name = ?`,
      ).run(now, makePrimary ? 1 : 0, n, keyName);
      this.#insertVersion(keyName, n, version, now);
      this.#completeIntentIn(opts);
      return toVersion(
        this.#stmt('SELECT * FROM key_versions WHERE key_name = ? AND version = ?').get(
          keyName,
          n,
        ) as VersionRow,
      );
    });
  }

  async getVersion(keyName: string, version: number): Promise<KeyVersionRecord | null> {
    return this.#read(() => {
      const row = this.#stmt('SELECT * FROM key_versions WHERE key_name = ? AND version = ?').get(
        keyName,
        version,
      ) as VersionRow | undefined;
      return row ? toVersion(row) : null;
    });
  }

  /**
   * The key and one of its versions (`'primary'`: its primary version) in ONE statement,
   * so one snapshot: the KeyResolver's hot path (forWrap/forUnwrap) instead of getKey +
   * getVersion. null when the key does not exist; `version` null when that version does
   * not (or the key has no primary version).
   */
  async getKeyWithVersion(
    name: string,
    version: number | 'primary',
  ): Promise<{ key: KeyRecord; version: KeyVersionRecord | null } | null> {
    if (!this.#db.open) throw new StoreError(StoreCodes.CLOSED, 'the metadata store is closed');
    const cacheKey = this.#keyCache.keyFor(name, version);
    if (cacheKey !== undefined) {
      const hit = this.#keyCache.get(cacheKey);
      if (hit !== undefined) return hit;
    }
    // A miss reads in the same synchronous run as the get above (no await between), so
    // what it stores is no older than the cache's last data_version check.
    const row = (
      version === 'primary'
        ? this.#rawStmt(`${KEY_WITH_VERSION} v.version = k.primary_version WHERE k.name = ?`).get(name)
        : this.#rawStmt(`${KEY_WITH_VERSION} v.version = ? WHERE k.name = ?`).get(version, name)
    ) as Cell[] | undefined;
    const result = row ? keyWithVersionFromRaw(row) : null;
    return cacheKey === undefined ? result : this.#keyCache.set(cacheKey, result);
  }

  async getVersionByCkaId(ckaId: string): Promise<KeyVersionRecord | null> {
    checkCkaId(ckaId);
    return this.#read(() => {
      const row = this.#stmt('SELECT * FROM key_versions WHERE cka_id = ?').get(ckaId) as
        VersionRow | undefined;
      return row ? toVersion(row) : null;
    });
  }

  async listVersions(keyName: string): Promise<KeyVersionRecord[]> {
    return this.#read(() =>
      (
        this.#stmt('SELECT * FROM key_versions WHERE key_name = ? ORDER BY version').all(
          keyName,
        ) as VersionRow[]
      ).map(toVersion),
    );
  }

  async setVersionState(keyName: string, version: number, state: VersionState): Promise<KeyVersionRecord> {
    if (state !== 'enabled' && state !== 'disabled') {
      throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'version state must be enabled or disabled');
    }
    return this.#tx(() => {
      const key = this.#mustLive(keyName);
      const sel = this.#stmt('SELECT * FROM key_versions WHERE key_name = ? AND version = ?');
      if (!sel.get(keyName, version)) {
        throw new StoreError(StoreCodes.NOT_FOUND, `version ${version} of key "${keyName}" not found`);
      }
      if (state === 'disabled' && key.primary_version === version) {
        throw new StoreError(
          StoreCodes.FAILED_PRECONDITION,
          `version ${version} is the primary version of "${keyName}"; rotate before disabling it`,
        );
      }
      const now = this.#clock();
      this.#stmt('UPDATE key_versions SET state = ? WHERE key_name = ? AND version = ?').run(
        state,
        keyName,
        version,
      );
      this.#stmt('UPDATE keys SET updated_at = ? WHERE name = ?').run(now, keyName);
      return toVersion(sel.get(keyName, version) as VersionRow);
    });
  }

  async setPrimaryVersion(keyName: string, version: number): Promise<KeyRecord> {
    return this.#tx(() => {
      this.#mustLive(keyName);
      const row = this.#stmt('SELECT state FROM key_versions WHERE key_name = ? AND version = ?').get(
        keyName,
        version,
      ) as { state: string } | undefined;
      if (!row)
        throw new StoreError(StoreCodes.NOT_FOUND, `version ${version} of key "${keyName}" not found`);
      if (row.state !== 'enabled') {
        throw new StoreError(
          StoreCodes.FAILED_PRECONDITION,
          `version ${version} of "${keyName}" is disabled`,
        );
      }
      this.#stmt('UPDATE keys SET primary_version = ?, updated_at = ? WHERE name = ?').run(
        version,
        this.#clock(),
        keyName,
      );
      return toKey(this.#mustKey(keyName));
    });
  }

  async beginIntent(kind: string, keyName: string | null, payload: unknown): Promise<string> {
    if (typeof kind !== 'string' || kind.length === 0) {
      throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'intent kind must be a non-empty string');
    }
    if (keyName !== null) checkKeyName(keyName);
    const text = json(payload, 'intent payload');
    return this.#tx(() => {
      const id = randomUUID();
      this.#stmt('INSERT INTO intents (id, kind, key_name, payload, created_at) VALUES (?, ?, ?, ?, ?)').run(
        id,
        kind,
        keyName,
        text,
        this.#clock(),
      );
      return id;
    });
  }

  async completeIntent(id: string): Promise<void> {
    this.#tx(() => this.#completeIntentIn({ completeIntent: id }));
  }

  async listOpenIntents(): Promise<IntentRecord[]> {
    return this.#read(() =>
      (
        this.#stmt('SELECT * FROM intents ORDER BY created_at, rowid').all() as Array<{
          id: string;
          kind: string;
          key_name: string | null;
          payload: string;
          created_at: number;
        }>
      ).map((r) => ({
        id: r.id,
        kind: r.kind,
        keyName: r.key_name,
        payload: JSON.parse(r.payload) as unknown,
        createdAt: r.created_at,
      })),
    );
  }

  #domainRow(): DomainRecord | null {
    const r = this.#stmt('SELECT * FROM domain WHERE singleton = 1').get() as
      { domain_id: string; created_at: number; metadata: string } | undefined;
    return r
      ? {
          domainId: r.domain_id,
          createdAt: r.created_at,
          metadata: JSON.parse(r.metadata) as Record<string, unknown>,
        }
      : null;
  }

  async getDomain(): Promise<DomainRecord | null> {
    return this.#read(() => this.#domainRow());
  }

  async initDomain(domainId: string, metadata: Record<string, unknown> = {}): Promise<DomainRecord> {
    if (typeof domainId !== 'string' || domainId.length === 0 || domainId.length > 128) {
      throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'domain id must be 1..128 characters');
    }
    checkObject(metadata, 'domain metadata');
    const text = json(metadata, 'domain metadata');
    return this.#tx(() => {
      if (this.#domainRow()) {
        throw new StoreError(StoreCodes.ALREADY_EXISTS, 'a security domain is already bound to this store');
      }
      this.#stmt('INSERT INTO domain (singleton, domain_id, created_at, metadata) VALUES (1, ?, ?, ?)').run(
        domainId,
        this.#clock(),
        text,
      );
      return this.#domainRow() as DomainRecord;
    });
  }

  async setDomainMetadata(metadata: Record<string, unknown>): Promise<DomainRecord> {
    checkObject(metadata, 'domain metadata');
    const text = json(metadata, 'domain metadata');
    return this.#tx(() => {
      const res = this.#stmt('UPDATE domain SET metadata = ? WHERE singleton = 1').run(text);
      if (res.changes !== 1) throw new StoreError(StoreCodes.NOT_FOUND, 'no security domain is bound');
      return this.#domainRow() as DomainRecord;
    });
  }

  async savePolicyDocument(doc: {
    format: 'yaml' | 'json';
    text: string;
    createdBy: string;
  }): Promise<PolicyDocumentRecord> {
    if (doc.format !== 'yaml' && doc.format !== 'json') {
      throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'policy format must be yaml or json');
    }
    if (typeof doc.text !== 'string' || typeof doc.createdBy !== 'string' || doc.createdBy.length === 0) {
      throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'policy text and author are required');
    }
    return this.#tx(() => {
      const res = this.#stmt(
        'INSERT INTO policy_documents (format, text, created_at, created_by) VALUES (?, ?, ?, ?)',
      ).run(doc.format, doc.text, this.#clock(), doc.createdBy);
      return this.#policyRow(Number(res.lastInsertRowid)) as PolicyDocumentRecord;
    });
  }

  #policyRow(revision?: number): PolicyDocumentRecord | null {
    const r = (
      revision === undefined
        ? this.#stmt('SELECT * FROM policy_documents ORDER BY revision DESC LIMIT 1').get()
        : this.#stmt('SELECT * FROM policy_documents WHERE revision = ?').get(revision)
    ) as
      { revision: number; format: string; text: string; created_at: number; created_by: string } | undefined;
    return r
      ? {
          revision: r.revision,
          format: r.format as 'yaml' | 'json',
          text: r.text,
          createdAt: r.created_at,
          createdBy: r.created_by,
        }
      : null;
  }

  async getCurrentPolicyDocument(): Promise<PolicyDocumentRecord | null> {
    return this.#read(() => this.#policyRow());
  }

  async createPendingRequest(req: NewPendingRequest): Promise<PendingRequestRecord> {
    if (typeof req.op !== 'string' || req.op.length === 0) {
      throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'request op must be a non-empty string');
    }
    if (typeof req.requester !== 'string' || req.requester.length === 0) {
      throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'requester must be a non-empty string');
    }
    if (req.keyName != null) checkKeyName(req.keyName);
    if (!Number.isSafeInteger(req.expiresAt)) {
      throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'expiresAt must be a time in ms since the epoch');
    }
    const payload = json(req.payload, 'request payload');
    return this.#tx(() => {
      const id = randomUUID();
      const now = this.#clock();
      if (req.expiresAt <= now) throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'expiresAt is in the past');
      this.#stmt(
        `INSERT INTO pending_requests (id, op, key_name, requester, created_at, expires_at, state, approvals, payload)
           VALUES (?, ?, ?, ?, ?, ?, 'pending', '[]', ?)`,
      ).run(id, req.op, req.keyName ?? null, req.requester, now, req.expiresAt, payload);
      return this.#requestRow(id) as PendingRequestRecord;
    });
  }

  #requestRow(id: string): PendingRequestRecord | null {
    const r = this.#stmt('SELECT * FROM pending_requests WHERE id = ?').get(id) as RequestRow | undefined;
    return r ? toRequest(r) : null;
  }

  async getPendingRequest(id: string): Promise<PendingRequestRecord | null> {
    return this.#read(() => this.#requestRow(id));
  }

  async listPendingRequests(
    filter: { state?: RequestState; keyName?: string } = {},
  ): Promise<PendingRequestRecord[]> {
    return this.#read(() => {
      const where: string[] = [];
      const args: unknown[] = [];
      if (filter.state !== undefined) {
        where.push('state = ?');
        args.push(filter.state);
      }
      if (filter.keyName !== undefined) {
        where.push('key_name = ?');
        args.push(filter.keyName);
      }
      const sql = `SELECT * FROM pending_requests ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
                   ORDER BY created_at, id`;
      return (this.#stmt(sql).all(...args) as RequestRow[]).map(toRequest);
    });
  }

  async updatePendingRequest(
    id: string,
    ifState: RequestState,
    patch: PendingRequestPatch,
  ): Promise<PendingRequestRecord> {
    if (patch.state !== undefined && !(REQUEST_STATES as readonly string[]).includes(patch.state)) {
      throw new StoreError(StoreCodes.INVALID_ARGUMENT, `unknown request state "${String(patch.state)}"`);
    }
    if (patch.approvals !== undefined) {
      if (!Array.isArray(patch.approvals))
        throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'approvals must be a list');
      for (const a of patch.approvals) {
        if (typeof a?.approver !== 'string' || !Number.isSafeInteger(a?.at)) {
          throw new StoreError(StoreCodes.INVALID_ARGUMENT, 'each approval needs an approver and a time');
        }
      }
    }
    const approvals = patch.approvals === undefined ? null : json(patch.approvals, 'approvals');
    return this.#tx(() => {
      const cur = this.#requestRow(id);
      if (!cur) throw new StoreError(StoreCodes.NOT_FOUND, `request ${id} not found`);
      if (cur.state !== ifState) {
        throw new StoreError(StoreCodes.CONFLICT, `request ${id} is ${cur.state}, not ${ifState}`);
      }
      this.#stmt(
        'UPDATE pending_requests SET state = ?, approvals = coalesce(?, approvals) WHERE id = ?',
      ).run(patch.state ?? cur.state, approvals, id);
      return this.#requestRow(id) as PendingRequestRecord;
    });
  }

  async deletePendingRequest(id: string): Promise<void> {
    this.#tx(() => {
      const res = this.#stmt('DELETE FROM pending_requests WHERE id = ?').run(id);
      if (res.changes !== 1) throw new StoreError(StoreCodes.NOT_FOUND, `request ${id} not found`);
    });
  }

  async schemaVersion(): Promise<number> {
    return this.#read(
      () => (this.#stmt('SELECT max(version) AS v FROM schema_migrations').get() as { v: number }).v,
    );
  }

  async close(): Promise<void> {
    this.#keyCache.clear();
    if (this.#db.open) this.#db.close();
  }
}

function checkObject(value: unknown, what: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new StoreError(StoreCodes.INVALID_ARGUMENT, `${what} must be an object`);
  }
}
