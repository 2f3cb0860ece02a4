// The getKeyWithVersion read cache: every write through the store shows on the very next
// read, other connections' commits show from the next event-loop turn, results are frozen,
// and the cache stays bounded. Real SQLite files in temp dirs throughout.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { StoreCodes } from '../../src/store/errors.js';
import { DEFAULT_KEY_CACHE_ENTRIES, KeyReadCache } from '../../src/store/key-read-cache.js';
import { openSqliteStore, storePathIn, type SqliteMetadataStore } from '../../src/store/sqlite-store.js';
import type { NewKey } from '../../src/store/types.js';
import { aesKey as baseKey, DAY, T0 } from './conformance.js';

const root = mkdtempSync(join(tmpdir(), 'hyokd-read-cache-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshPath = (): string => storePathIn(mkdtempSync(join(root, `d${n++}-`)));

/** Lets the event loop reach its check phase: the cache's once-per-turn flag resets. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The conformance suite's key, with tags and a rotation policy to see in cached reads. */
function aesKey(name: string, ckaId: string, extra: Partial<NewKey> = {}): NewKey {
  return baseKey(name, ckaId, {
    tags: { team: 'a' },
    rotation: { rotationPeriodDays: 30, expiresAt: T0 + 100 * DAY },
    ...extra,
  });
}

function open(
  t: Test,
  path = freshPath(),
): { store: SqliteMetadataStore; path: string; clock: { now: number } } {
  const clock = { now: T0 };
  const store = openSqliteStore({ path, synchronous: 'NORMAL', clock: () => clock.now });
  t.teardown(() => store.close());
  return { store, path, clock };
}

/** Reads twice and checks the second read was a cache hit (same frozen object). */
async function warm(
  t: Test,
  store: SqliteMetadataStore,
  name: string,
  version: number | 'primary',
): Promise<void> {
  const a = await store.getKeyWithVersion(name, version);
  const b = await store.getKeyWithVersion(name, version);
  t.equal(a, b, `${name}@${version} is served from the cache`);
}

t.test('PRAGMA data_version: changes for other connections’ commits, not for our own', async (t) => {
  const path = freshPath();
  const { store } = open(t, path);
  await store.createKey(aesKey('k', '0a'));
  const a = new Database(path);
  const b = new Database(path);
  t.teardown(() => {
    a.close();
    b.close();
  });
  const dv = a.prepare('PRAGMA data_version').pluck();
  const before = dv.get();
  a.prepare("UPDATE keys SET tags = '{}' WHERE name = 'k'").run();
  t.equal(dv.get(), before, 'own commit: unchanged');
  b.prepare('UPDATE keys SET tags = \'{"x":"y"}\' WHERE name = \'k\'').run();
  const afterOther = dv.get();
  t.not(afterOther, before, "another connection's commit: changed");
  t.equal(dv.get(), afterOther, 'stable while nobody else commits');
  b.exec('BEGIN IMMEDIATE');
  b.prepare("UPDATE keys SET tags = '{}' WHERE name = 'k'").run();
  t.equal(dv.get(), afterOther, 'an uncommitted write elsewhere does not change it');
  b.exec('ROLLBACK');
  t.equal(dv.get(), afterOther, 'nor does its rollback');
});

t.test('every write through the store shows on the very next read, same turn', async (t) => {
  const { store, clock } = open(t);
  await store.createKey(aesKey('k', '0a'));
  await store.addVersion('k', { ckaId: '0b', hsmLabel: 'k-v2' }, { makePrimary: false });

  await warm(t, store, 'k', 'primary');
  await warm(t, store, 'k', 2);
  await store.setKeyState('k', 'disabled');
  t.equal((await store.getKeyWithVersion('k', 'primary'))?.key.state, 'disabled', 'disable key');
  t.equal((await store.getKeyWithVersion('k', 2))?.key.state, 'disabled', 'disable key, other entry');

  await warm(t, store, 'k', 'primary');
  await store.setKeyState('k', 'enabled');
  t.equal((await store.getKeyWithVersion('k', 'primary'))?.key.state, 'enabled', 're-enable key');

  await warm(t, store, 'k', 2);
  await store.setVersionState('k', 2, 'disabled');
  t.equal((await store.getKeyWithVersion('k', 2))?.version?.state, 'disabled', 'disable version');

  await warm(t, store, 'k', 2);
  await store.setVersionState('k', 2, 'enabled');
  t.equal((await store.getKeyWithVersion('k', 2))?.version?.state, 'enabled', 're-enable version');

  await warm(t, store, 'k', 'primary');
  await store.setPrimaryVersion('k', 2);
  let p = await store.getKeyWithVersion('k', 'primary');
  t.equal(p?.version?.version, 2, 'setPrimaryVersion');
  t.equal(p?.key.primaryVersion, 2);

  await warm(t, store, 'k', 'primary');
  await warm(t, store, 'k', 3);
  t.equal((await store.getKeyWithVersion('k', 3))?.version, null, 'version 3 not there yet');
  await store.addVersion('k', { ckaId: '0c', hsmLabel: 'k-v3' });
  p = await store.getKeyWithVersion('k', 'primary');
  t.equal(p?.version?.ckaId, '0c', 'rotate: the new primary at once');
  t.equal((await store.getKeyWithVersion('k', 3))?.version?.version, 3, 'and the cached miss is gone');

  await warm(t, store, 'k', 'primary');
  await store.setTags('k', { team: 'b' });
  t.same((await store.getKeyWithVersion('k', 'primary'))?.key.tags, { team: 'b' }, 'setTags');

  await warm(t, store, 'k', 'primary');
  await store.setRotationPolicy('k', { expiresAt: T0 + DAY });
  t.same((await store.getKeyWithVersion('k', 'primary'))?.key.rotation, { expiresAt: T0 + DAY }, 'rotation');

  await warm(t, store, 'k', 'primary');
  await store.setPurgeProtection('k', true);
  t.equal((await store.getKeyWithVersion('k', 'primary'))?.key.purgeProtection, true, 'purge protection');

  await warm(t, store, 'k', 'primary');
  await store.softDelete('k');
  t.equal((await store.getKeyWithVersion('k', 'primary'))?.key.state, 'soft-deleted', 'softDelete');

  await warm(t, store, 'k', 'primary');
  await store.recover('k');
  t.equal((await store.getKeyWithVersion('k', 'primary'))?.key.state, 'enabled', 'recover');

  // Purge: needs soft-delete and (with purge protection) the retention to have passed.
  await store.softDelete('k');
  clock.now += 8 * DAY;
  await warm(t, store, 'k', 'primary');
  await warm(t, store, 'k', 1);
  await store.removeKey('k');
  t.equal(await store.getKeyWithVersion('k', 'primary'), null, 'removeKey');
  t.equal(await store.getKeyWithVersion('k', 1), null, 'removeKey, other entry');

  // A cached "not found" goes away when the key is created.
  await warm(t, store, 'k', 'primary');
  await store.createKey(aesKey('k', '1a'));
  t.equal((await store.getKeyWithVersion('k', 'primary'))?.version?.ckaId, '1a', 'createKey after a miss');
});

t.test('writes that are not about keys also clear (and do not break) the cache', async (t) => {
  const { store } = open(t);
  await store.createKey(aesKey('k', '0a'));
  await warm(t, store, 'k', 'primary');
  const id = await store.beginIntent('x', 'k', {});
  await store.completeIntent(id);
  await store.initDomain('dom');
  const r = await store.getKeyWithVersion('k', 'primary');
  t.equal(r?.key.name, 'k');
  t.equal(r?.version?.ckaId, '0a');
});

t.test('another connection’s commit: seen from the next event-loop turn', async (t) => {
  const path = freshPath();
  const { store } = open(t, path);
  await store.createKey(aesKey('k', '0a'));
  await store.addVersion('k', { ckaId: '0b', hsmLabel: 'k-v2' }, { makePrimary: false });
  const shell = new Database(path);
  t.teardown(() => shell.close());

  await nextTurn();
  await warm(t, store, 'k', 'primary'); // this turn's data_version check is done
  shell.prepare("UPDATE keys SET state = 'disabled' WHERE name = 'k'").run();
  // Documented: within the turn that already checked, the commit is concurrent with
  // these calls and they may still be answered from before it.
  t.equal(
    (await store.getKeyWithVersion('k', 'primary'))?.key.state,
    'enabled',
    'same turn after the check: the state as of the check',
  );
  await nextTurn();
  t.equal((await store.getKeyWithVersion('k', 'primary'))?.key.state, 'disabled', 'next turn: disabled');

  // A turn that starts with the other write already committed sees it on its first call.
  await warm(t, store, 'k', 2);
  await nextTurn();
  shell.prepare("UPDATE key_versions SET state = 'disabled' WHERE key_name = 'k' AND version = 2").run();
  t.equal((await store.getKeyWithVersion('k', 2))?.version?.state, 'disabled', 'version disabled');

  await warm(t, store, 'k', 'primary');
  await nextTurn();
  shell.prepare("DELETE FROM keys WHERE name = 'k'").run();
  t.equal(await store.getKeyWithVersion('k', 'primary'), null, 'deleted by the other connection');

  await warm(t, store, 'gone', 'primary');
  await nextTurn();
  shell
    .prepare(
      `INSERT INTO keys (name, kind, operations, state, created_at, updated_at, tags, retention_days,
         purge_protection, primary_version, origin)
       VALUES ('gone', 'aes-256', '["wrapKey"]', 'enabled', 1, 1, '{}', 7, 0, NULL, 'generated')`,
    )
    .run();
  t.equal((await store.getKeyWithVersion('gone', 'primary'))?.key.name, 'gone', 'a cached miss is dropped');
});

t.test('a second store instance on the same file: rotation and disable are seen next turn', async (t) => {
  const path = freshPath();
  const { store: reader } = open(t, path);
  const { store: writer } = open(t, path);
  await writer.createKey(aesKey('k', '0a'));
  await nextTurn();
  await warm(t, reader, 'k', 'primary');
  await writer.addVersion('k', { ckaId: '0b', hsmLabel: 'k-v2' });
  await nextTurn();
  t.equal((await reader.getKeyWithVersion('k', 'primary'))?.version?.ckaId, '0b', 'new primary');
  await warm(t, reader, 'k', 1);
  await nextTurn();
  await writer.setVersionState('k', 1, 'disabled');
  await nextTurn();
  t.equal((await reader.getKeyWithVersion('k', 1))?.version?.state, 'disabled', 'version 1 disabled');
  await writer.setKeyState('k', 'disabled');
  await nextTurn();
  t.equal((await reader.getKeyWithVersion('k', 'primary'))?.key.state, 'disabled', 'key disabled');
});

t.test('a failed or rolled-back write leaves correct reads', async (t) => {
  const path = freshPath();
  const { store } = open(t, path);
  await store.createKey(aesKey('k', '0a'));
  await store.createKey(aesKey('other', '0f'));
  await warm(t, store, 'k', 'primary');
  // addVersion updates the key row first, then fails on the duplicate CKA_ID: rolled back.
  await t.rejects(store.addVersion('k', { ckaId: '0f', hsmLabel: 'dup' }), {
    code: StoreCodes.ALREADY_EXISTS,
  });
  let r = await store.getKeyWithVersion('k', 'primary');
  t.equal(r?.key.primaryVersion, 1, 'primary unchanged');
  t.equal(r?.version?.ckaId, '0a');
  await t.rejects(store.setVersionState('k', 1, 'disabled'), { code: StoreCodes.FAILED_PRECONDITION });
  t.equal((await store.getKeyWithVersion('k', 1))?.version?.state, 'enabled', 'refused disable: enabled');

  // A write that cannot get the lock fails; the reads still see the committed state.
  const busy = openSqliteStore({ path, busyTimeoutMs: 20 });
  t.teardown(() => busy.close());
  const lock = new Database(path);
  t.teardown(() => lock.close());
  await warm(t, busy, 'k', 'primary');
  lock.exec('BEGIN IMMEDIATE');
  lock.prepare("UPDATE keys SET state = 'disabled' WHERE name = 'k'").run();
  await t.rejects(busy.setKeyState('k', 'disabled'), /locked|busy/i);
  await nextTurn();
  t.equal((await busy.getKeyWithVersion('k', 'primary'))?.key.state, 'enabled', 'uncommitted: not seen');
  lock.exec('ROLLBACK');
  await nextTurn();
  r = await busy.getKeyWithVersion('k', 'primary');
  t.equal(r?.key.state, 'enabled', 'rolled back elsewhere: still enabled');
});

t.test('results are frozen; an SPKI buffer is never shared', async (t) => {
  'use strict';
  const { store } = open(t);
  await store.createKey(aesKey('k', '0a'));
  const spki = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
  await store.createKey({
    name: 'ec',
    kind: 'ec-p256',
    operations: ['sign', 'verify'],
    origin: 'generated',
    retentionDays: 7,
    firstVersion: { ckaId: '0e', hsmLabel: 'ec-v1', publicKeySpki: spki },
  });
  for (const round of ['miss', 'hit']) {
    const r = await store.getKeyWithVersion('k', 'primary');
    if (!r?.version) throw new Error('no result');
    const key = r.key as unknown as Record<string, unknown>;
    const version = r.version as unknown as Record<string, unknown>;
    t.throws(
      () => {
        key.state = 'enabled-by-mistake';
      },
      TypeError,
      `${round}: key`,
    );
    t.throws(
      () => {
        (r.key.operations as string[]).push('sign');
      },
      TypeError,
      `${round}: operations`,
    );
    t.throws(
      () => {
        (r.key.tags as Record<string, string>).team = 'z';
      },
      TypeError,
      `${round}: tags`,
    );
    t.throws(
      () => {
        (r.key.rotation as Record<string, number>).expiresAt = 0;
      },
      TypeError,
      `${round}: rotation`,
    );
    t.throws(
      () => {
        version.state = 'enabled';
      },
      TypeError,
      `${round}: version`,
    );
    t.throws(
      () => {
        (r as { version: unknown }).version = null;
      },
      TypeError,
      `${round}: the result`,
    );
  }
  const after = await store.getKeyWithVersion('k', 'primary');
  t.same(after?.key.tags, { team: 'a' });
  t.same(after?.key.operations, ['wrapKey', 'unwrapKey']);

  const first = await store.getKeyWithVersion('ec', 'primary');
  const second = await store.getKeyWithVersion('ec', 'primary');
  t.ok(Object.isFrozen(second?.version), 'version with SPKI frozen');
  t.equal(first?.key, second?.key, 'the key record itself is shared (frozen)');
  t.not(first?.version?.publicKeySpki, second?.version?.publicKeySpki, 'each caller its own Buffer');
  first?.version?.publicKeySpki?.fill(0);
  second?.version?.publicKeySpki?.fill(1);
  t.same((await store.getKeyWithVersion('ec', 'primary'))?.version?.publicKeySpki, spki, 'cache unharmed');
});

t.test('a closed store refuses even cached reads', async (t) => {
  const path = freshPath();
  const store = openSqliteStore({ path });
  await store.createKey(aesKey('k', '0a'));
  await store.getKeyWithVersion('k', 'primary');
  await store.close();
  await t.rejects(store.getKeyWithVersion('k', 'primary'), { code: StoreCodes.CLOSED });
});

t.test('many unknown names keep the store correct', async (t) => {
  const { store } = open(t);
  await store.createKey(aesKey('k', '0a'));
  let found = 0;
  for (let i = 0; i < DEFAULT_KEY_CACHE_ENTRIES + 500; i++) {
    if ((await store.getKeyWithVersion(`unknown-${i}`, i % 2 ? 'primary' : i)) !== null) found++;
  }
  t.equal(found, 0, 'every unknown name is not found');
  t.equal((await store.getKeyWithVersion('k', 'primary'))?.version?.ckaId, '0a');
  const long = 'x'.repeat(100_000);
  t.equal(await store.getKeyWithVersion(long, 'primary'), null, 'an over-long name is answered');
  const frac = await store.getKeyWithVersion('k', 1.5);
  t.equal(frac?.key.name, 'k', 'a fractional version (not cached) still reads the key');
  t.equal(frac?.version, null, 'and no version');
});

t.test('KeyReadCache: bounded, bypasses odd keys, checks data_version once per turn', async (t) => {
  let dv = 1;
  let checks = 0;
  const cache = new KeyReadCache(() => {
    checks++;
    return dv;
  }, 100);
  t.throws(() => new KeyReadCache(() => 0, 0), RangeError, 'needs room');
  t.equal(cache.keyFor('x'.repeat(129), 'primary'), undefined, 'over-long name bypasses');
  t.equal(cache.keyFor('k', 1.5), undefined, 'fractional version bypasses');
  t.equal(cache.keyFor('k', Number.NaN), undefined, 'NaN version bypasses');
  t.not(cache.keyFor('a\n1', 'primary'), cache.keyFor('a', 1), 'no key collision');
  t.equal(cache.keyFor('k', 1), cache.keyFor('k', 1));

  await nextTurn();
  const base = checks;
  let maxSize = 0;
  let hits = 0;
  for (let i = 0; i < 1000; i++) {
    const key = cache.keyFor(`n${i}`, 'primary')!;
    if (cache.get(key) !== undefined) hits++;
    cache.set(key, null);
    maxSize = Math.max(maxSize, cache.size);
  }
  t.equal(hits, 0, 'new names miss');
  t.equal(maxSize, 100, 'never above the cap');
  t.ok(cache.size <= 100 && cache.size > 0, `bounded (${cache.size})`);
  t.equal(checks - base, 1, 'one data_version read for 1000 calls in one turn');
  const k = cache.keyFor('n999', 'primary')!;
  t.equal(cache.get(k), null, 'negative entry cached');
  dv = 2;
  t.equal(cache.get(k), null, 'same turn: not re-checked');
  await nextTurn();
  t.equal(cache.get(k), undefined, 'next turn: data_version moved, entry dropped');
  t.equal(checks - base, 2);
  t.equal(cache.size, 0);

  const big = new KeyReadCache(() => 0);
  let bigMax = 0;
  for (let i = 0; i < DEFAULT_KEY_CACHE_ENTRIES * 2 + 10; i++) {
    big.set(big.keyFor(`u${i}`, i)!, null);
    bigMax = Math.max(bigMax, big.size);
  }
  t.equal(bigMax, DEFAULT_KEY_CACHE_ENTRIES, 'the default cap holds');
});
