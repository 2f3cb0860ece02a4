// SQLite-specific behaviour: pragmas, migrations of an old file, refusing a newer schema,
// database-level guards, and two instances on one file.
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { StoreCodes } from '../../src/store/errors.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from '../../src/store/migrations.js';
import { openSqliteStore, storePathIn } from '../../src/store/sqlite-store.js';

const root = mkdtempSync(join(tmpdir(), 'hyokd-sqlite-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => mkdtempSync(join(root, `d${n++}-`));

t.test('opens a real file in WAL mode at the latest schema', async (t) => {
  const path = storePathIn(freshDir());
  const store = openSqliteStore({ path, busyTimeoutMs: 1234 });
  t.equal(await store.schemaVersion(), LATEST_SCHEMA_VERSION);
  await store.close();
  const db = new Database(path, { readonly: true });
  t.teardown(() => db.close());
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal', 'WAL persists in the file');
  const rows = db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as Array<{
    version: number;
  }>;
  t.same(
    rows.map((r) => r.version),
    MIGRATIONS.map((m) => m.version),
  );
});

t.test(
  'a new store file and its WAL are private to the owner; an existing file keeps its mode',
  async (t) => {
    const path = storePathIn(freshDir());
    const store = openSqliteStore({ path });
    t.equal(statSync(path).mode & 0o777, 0o600, 'database file');
    for (const side of [`${path}-wal`, `${path}-shm`]) {
      if (existsSync(side)) t.equal(statSync(side).mode & 0o777, 0o600, side.slice(-4));
    }
    await store.close();
    const other = storePathIn(freshDir());
    writeFileSync(other, '');
    chmodSync(other, 0o640);
    await openSqliteStore({ path: other }).close();
    t.equal(statSync(other).mode & 0o777, 0o640, "an operator's choice is kept");
  },
);

t.test('migrations are ordered and strictly increasing from 1', async (t) => {
  MIGRATIONS.forEach((m, i) => t.equal(m.version, i + 1, m.name));
});

t.test('an old v1 database is migrated and its data survives', async (t) => {
  const path = storePathIn(freshDir());
  // Build a v1 file the way a v1 hyokd left it: its schema, its bookkeeping, some rows.
  const old = new Database(path);
  old.exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL,
            applied_at INTEGER NOT NULL)`);
  old.exec(MIGRATIONS[0]!.sql);
  old.prepare('INSERT INTO schema_migrations VALUES (1, ?, 1)').run(MIGRATIONS[0]!.name);
  old.exec(`INSERT INTO keys (name, kind, operations, state, created_at, updated_at, tags, retention_days,
              purge_protection, primary_version, origin)
            VALUES ('legacy', 'rsa-3072', '["sign","verify"]', 'enabled', 100, 200, '{"a":"b"}', 30, 1, 1, 'adopted')`);
  old.exec(`INSERT INTO key_versions (key_name, version, cka_id, hsm_label, state, created_at, public_key_spki)
            VALUES ('legacy', 1, 'cafe', 'old-label', 'enabled', 100, x'3082')`);
  old.exec(
    `INSERT INTO intents (id, kind, key_name, payload, created_at) VALUES ('i1', 'create', 'legacy', '{}', 5)`,
  );
  old.exec(`INSERT INTO domain (singleton, domain_id, created_at, metadata) VALUES (1, 'dom', 7, '{}')`);
  t.throws(() => old.prepare('SELECT 1 FROM pending_requests').get(), 'v1 has no pending_requests');
  old.close();

  const store = openSqliteStore({ path, clock: () => 1000 });
  t.teardown(() => store.close());
  t.equal(await store.schemaVersion(), LATEST_SCHEMA_VERSION);
  t.match(await store.getKey('legacy'), {
    name: 'legacy',
    kind: 'rsa-3072',
    operations: ['sign', 'verify'],
    createdAt: 100,
    updatedAt: 200,
    tags: { a: 'b' },
    retentionDays: 30,
    purgeProtection: true,
    primaryVersion: 1,
    origin: 'adopted',
  });
  const v = await store.getVersionByCkaId('cafe');
  t.equal(v?.hsmLabel, 'old-label');
  t.ok(v?.publicKeySpki?.equals(Buffer.from([0x30, 0x82])));
  t.same(
    (await store.listOpenIntents()).map((i) => i.id),
    ['i1'],
  );
  t.equal((await store.getDomain())?.domainId, 'dom');
  // the v2 tables work
  const r = await store.createPendingRequest({
    op: 'purge',
    keyName: 'legacy',
    requester: 'x',
    expiresAt: 2000,
  });
  t.equal((await store.getPendingRequest(r.id))?.op, 'purge');
  await store.savePolicyDocument({ format: 'yaml', text: 'version: 1', createdBy: 'me' });
  t.equal((await store.getCurrentPolicyDocument())?.revision, 1);
});

t.test('a newer-than-known schema is refused and the file left alone', async (t) => {
  const path = storePathIn(freshDir());
  const s = openSqliteStore({ path });
  await s.close();
  const db = new Database(path);
  db.prepare('INSERT INTO schema_migrations VALUES (?, ?, 0)').run(
    LATEST_SCHEMA_VERSION + 1,
    'from the future',
  );
  db.close();
  t.throws(() => openSqliteStore({ path }), {
    code: StoreCodes.SCHEMA_TOO_NEW,
    message: new RegExp(`schema version ${LATEST_SCHEMA_VERSION + 1}.*newer`),
  });
  const check = new Database(path, { readonly: true });
  t.teardown(() => check.close());
  const max = check.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number };
  t.equal(max.v, LATEST_SCHEMA_VERSION + 1, 'untouched');
});

t.test('a failing migration leaves the file at its old version', async (t) => {
  const path = storePathIn(freshDir());
  // v1 file whose data breaks nothing, but a conflicting table makes migration 2 fail.
  const old = new Database(path);
  old.exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL,
            applied_at INTEGER NOT NULL)`);
  old.exec(MIGRATIONS[0]!.sql);
  old.prepare('INSERT INTO schema_migrations VALUES (1, ?, 1)').run(MIGRATIONS[0]!.name);
  old.exec('CREATE TABLE pending_requests (x INTEGER)');
  old.close();
  t.throws(() => openSqliteStore({ path }), /already exists/);
  const check = new Database(path, { readonly: true });
  t.teardown(() => check.close());
  t.equal((check.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number }).v, 1);
  t.throws(() => check.prepare('SELECT 1 FROM policy_documents').get(), 'no half-applied v2');
});

t.test('the database itself refuses forbidden changes', async (t) => {
  const path = storePathIn(freshDir());
  const store = openSqliteStore({ path });
  await store.createKey({
    name: 'k',
    kind: 'aes-256',
    operations: ['wrapKey'],
    origin: 'generated',
    retentionDays: 7,
    purgeProtection: true,
  });
  await store.close();
  const db = new Database(path);
  t.teardown(() => db.close());
  t.throws(() => db.exec(`UPDATE keys SET purge_protection = 0 WHERE name = 'k'`), /cannot be turned off/);
  t.throws(() => db.exec(`UPDATE keys SET retention_days = 8 WHERE name = 'k'`), /fixed at creation/);
  t.throws(
    () => db.exec(`UPDATE keys SET state = 'soft-deleted' WHERE name = 'k'`),
    /CHECK/,
    'no deleted_at',
  );
  t.throws(
    () =>
      db.exec(`INSERT INTO keys (name, kind, operations, state, created_at, updated_at, retention_days, origin)
               VALUES ('x', 'aes-256', '[]', 'enabled', 0, 0, 91, 'generated')`),
    /CHECK/,
  );
  t.throws(
    () =>
      db.exec(`INSERT INTO key_versions (key_name, version, cka_id, hsm_label, state, created_at)
               VALUES ('k', 1, 'XY', 'l', 'enabled', 0)`),
    /CHECK/,
  );
  t.throws(
    () =>
      db.exec(`INSERT INTO key_versions (key_name, version, cka_id, hsm_label, state, created_at)
               VALUES ('ghost', 1, 'ab', 'l', 'enabled', 0)`),
    /FOREIGN KEY/i,
    'versions need their key (foreign keys on)',
  );
});

t.test('two instances on one file see each other and both write', async (t) => {
  const path = storePathIn(freshDir());
  const a = openSqliteStore({ path });
  const b = openSqliteStore({ path });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const key = (name: string, id: string) => ({
    name,
    kind: 'aes-256' as const,
    operations: ['wrapKey' as const],
    origin: 'generated' as const,
    retentionDays: 7,
    firstVersion: { ckaId: id, hsmLabel: name },
  });
  await a.createKey(key('from-a', '0a'));
  t.equal((await b.getKey('from-a'))?.name, 'from-a', 'b reads what a committed');
  await b.createKey(key('from-b', '0b'));
  await b.addVersion('from-a', { ckaId: '1a', hsmLabel: 'x' });
  t.equal((await a.getKey('from-a'))?.primaryVersion, 2, 'a reads what b committed');
  await t.rejects(
    a.createKey(key('from-b', '0c')),
    { code: StoreCodes.ALREADY_EXISTS },
    'uniqueness across instances',
  );
  await t.rejects(b.addVersion('from-b', { ckaId: '1a', hsmLabel: 'y' }), {
    code: StoreCodes.ALREADY_EXISTS,
  });
  const both = await Promise.all([a.listKeys(), b.listKeys()]);
  t.same(
    both.map((l) => l.map((k) => k.name)),
    [
      ['from-a', 'from-b'],
      ['from-a', 'from-b'],
    ],
  );
});

t.test('a writer waits for another instance to release its lock', async (t) => {
  const path = storePathIn(freshDir());
  const store = openSqliteStore({ path, busyTimeoutMs: 50 });
  t.teardown(() => store.close());
  const other = new Database(path);
  t.teardown(() => other.close());
  other.exec('BEGIN IMMEDIATE');
  await t.rejects(store.beginIntent('x', null, {}), /locked|busy/i, 'gives up after the busy timeout');
  other.exec('COMMIT');
  t.ok(await store.beginIntent('x', null, {}), 'proceeds once the lock is free');
});

t.test(
  'getKeyWithVersion: the key and one version in one read, same records as getKey/getVersion',
  async (t) => {
    const store = openSqliteStore({ path: storePathIn(freshDir()) });
    t.teardown(() => store.close());
    t.equal(await store.getKeyWithVersion('none', 'primary'), null, 'no key');
    t.equal(await store.getKeyWithVersion('none', 1), null, 'no key, explicit version');
    await store.createKey({
      name: 'k',
      kind: 'aes-256',
      operations: ['wrapKey', 'unwrapKey'],
      origin: 'generated',
      retentionDays: 7,
      tags: { team: 'a' },
      firstVersion: { ckaId: '0a', hsmLabel: 'k-v1' },
    });
    await store.addVersion('k', { ckaId: '1a', hsmLabel: 'k-v2' });
    await store.setVersionState('k', 1, 'disabled');
    const primary = await store.getKeyWithVersion('k', 'primary');
    t.same(primary?.key, await store.getKey('k'));
    t.same(primary?.version, await store.getVersion('k', 2), 'primary is version 2');
    const v1 = await store.getKeyWithVersion('k', 1);
    t.same(v1?.version, await store.getVersion('k', 1));
    t.equal(v1?.version?.state, 'disabled');
    const missing = await store.getKeyWithVersion('k', 9);
    t.same(missing?.key, await store.getKey('k'), 'the key even when the version is missing');
    t.equal(missing?.version, null);
    await store.createKey({
      name: 'bare',
      kind: 'aes-256',
      operations: ['wrapKey'],
      origin: 'generated',
      retentionDays: 7,
    });
    const bare = await store.getKeyWithVersion('bare', 'primary');
    t.equal(bare?.key.primaryVersion, null);
    t.equal(bare?.version, null, 'no primary version: no version');
  },
);
