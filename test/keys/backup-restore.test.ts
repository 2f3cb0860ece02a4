// Backup and restore bound to a security domain, on real SoftHSM2 tokens: a blob restores
// into the same domain only; tampering, downgrades and non-backupable keys are refused.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyService } from '../../src/keys/key-service.js';
import { openSqliteStore } from '../../src/store/index.js';
import { decodeBackup, encodeBackup } from '../../src/keys/backup-blob.js';
import { keysFixture, objectsWithId, code } from './helpers.js';

const f = await keysFixture('backup');
t.teardown(() => f.close());
const { keys, hsm } = f;

t.test('no domain: backup refused', async (t) => {
  await keys.createKey({ name: 'early', kind: 'aes-256', backupable: true });
  t.equal(await code(keys.backupKey('early')), 'DOMAIN_NOT_BOUND');
});

// Set by the next subtest (subtests run in order; a top-level await would race the first).
let domain: { domainId: string; backupKeyId: string };

t.test('initDomain is once: a second call returns the same domain', async (t) => {
  domain = await keys.initDomain();
  t.match(domain.domainId, /^[0-9a-f-]{36}$/);
  t.same(await keys.initDomain(), domain);
  t.equal(await objectsWithId(hsm, domain.backupKeyId), 1);
  const { handles } = await hsm.run({
    op: 'find',
    cls: 'secret',
    id: Buffer.from(domain.backupKeyId, 'hex'),
  });
  const a = (await hsm.run({ op: 'getAttributes', handle: handles[0]! })).attrs;
  t.equal(a.extractable, false, 'the domain key itself never leaves');
});

t.test('a non-backupable key cannot be backed up', async (t) => {
  await keys.createKey({ name: 'locked', kind: 'aes-256' });
  t.equal(await code(keys.backupKey('locked')), 'OPERATION_NOT_ALLOWED');
});

t.test('backup, purge, restore: all versions, states and data survive', async (t) => {
  await keys.createKey({
    name: 'bk',
    kind: 'aes-256',
    backupable: true,
    tags: { a: '1' },
    purgeProtection: false,
    retentionDays: 7,
  });
  const v1 = await keys.forWrap('bk', 'wrapKey');
  const dek1 = randomBytes(32);
  const e1 = await hsm.run({ op: 'encrypt', key: v1.ref, plaintext: dek1 });
  await keys.rotateKey('bk');
  const v2 = await keys.forWrap('bk', 'wrapKey');
  const dek2 = randomBytes(32);
  const e2 = await hsm.run({ op: 'encrypt', key: v2.ref, plaintext: dek2 });
  await keys.rotateKey('bk');
  await keys.setKeyState('bk', false, 1);
  const before = await keys.describe('bk');
  const { backup, securityDomain } = await keys.backupKey('bk');
  t.equal(securityDomain, domain.domainId);
  t.notOk(backup.includes(dek1), 'no clear material');

  t.equal(await code(keys.restoreKey(backup)), 'KEY_EXISTS');
  await keys.deleteKey('bk');
  await keys.purgeKey('bk');
  const r = await keys.restoreKey(backup);
  t.equal(r.origin, 'restored');
  t.equal(r.primaryVersion, 3);
  t.same(
    r.versions.map((v) => v.state),
    ['disabled', 'enabled', 'enabled'],
  );
  t.same(r.tags, { a: '1' });
  t.equal(r.state, 'enabled');
  t.not(r.versions[0]!.hsmObjectId, before.versions[0]!.hsmObjectId, 'fresh CKA_IDs');
  t.equal(await code(keys.forUnwrap('bk', 1, 'unwrapKey')), 'VERSION_DISABLED');
  await keys.setKeyState('bk', true, 1);
  const d1 = await hsm.run({
    op: 'decrypt',
    key: (await keys.forUnwrap('bk', 1, 'unwrapKey')).ref,
    iv: e1.iv,
    ciphertext: e1.ciphertext,
  });
  t.ok(d1.plaintext.equals(dek1));
  const d2 = await hsm.run({
    op: 'decrypt',
    key: (await keys.forUnwrap('bk', 2, 'unwrapKey')).ref,
    iv: e2.iv,
    ciphertext: e2.ciphertext,
  });
  t.ok(d2.plaintext.equals(dek2));
  const { handles } = await hsm.run({
    op: 'find',
    cls: 'secret',
    id: Buffer.from(r.versions[0]!.hsmObjectId, 'hex'),
  });
  const a = (await hsm.run({ op: 'getAttributes', handle: handles[0]! })).attrs;
  t.equal(a.sensitive, true);
  t.same(await f.store.listOpenIntents(), []);
});

t.test('an older backup of a key with a longer history is a downgrade', async (t) => {
  await keys.createKey({ name: 'dg', kind: 'ec-p256', backupable: true });
  const old = (await keys.backupKey('dg')).backup;
  await keys.rotateKey('dg');
  t.equal(await code(keys.restoreKey(old)), 'DOWNGRADE');
  // Rotation keeps backupability; the pair round-trips with its public key.
  const fresh = (await keys.backupKey('dg')).backup;
  const spki = (await keys.describe('dg')).versions[1]!.publicKeySpki!;
  await keys.deleteKey('dg');
  await keys.purgeKey('dg');
  const r = await keys.restoreKey(fresh);
  t.ok(r.versions[1]!.publicKeySpki!.equals(spki));
  t.equal((await keys.forWrap('dg', 'sign')).version, 2);
});

t.test('tampered blobs are refused and leave nothing behind', async (t) => {
  await keys.createKey({ name: 'tp', kind: 'aes-256', backupable: true });
  const { backup } = await keys.backupKey('tp');
  await keys.deleteKey('tp');
  await keys.purgeKey('tp');
  const env = decodeBackup(backup);
  const w = Buffer.from(env.wrapped[0]!);
  w[5]! ^= 1;
  t.equal(await code(keys.restoreKey(encodeBackup({ ...env, wrapped: [w] }))), 'IMPORT_BLOB_INVALID');
  const s = Buffer.from(env.sealed);
  s[0]! ^= 1;
  t.equal(await code(keys.restoreKey(encodeBackup({ ...env, sealed: s }))), 'IMPORT_BLOB_INVALID');
  t.equal(await code(keys.restoreKey(Buffer.from('{"format":"nope"}'))), 'IMPORT_BLOB_INVALID');
  t.equal(await code(keys.restoreKey(Buffer.from('garbage'))), 'IMPORT_BLOB_INVALID');
  t.equal(await code(keys.restoreKey(encodeBackup({ ...env, domainId: 'other-domain' }))), 'DOMAIN_MISMATCH');
  t.equal(await f.store.getKey('tp'), null);
  t.same(await f.store.listOpenIntents(), []);
  t.equal((await keys.restoreKey(backup)).name, 'tp', 'the untouched blob still restores');
});

t.test('another domain (own store and token) refuses the blob', async (t) => {
  // A second hyokd on the same token but its own store and domain: DOMAIN_MISMATCH.
  const dir = mkdtempSync(join(tmpdir(), 'hyokd-keys-b-'));
  const store2 = openSqliteStore({ path: join(dir, 'm.sqlite'), synchronous: 'NORMAL' });
  const keys2 = new KeyService({ hsm, store: store2 });
  t.teardown(async () => {
    await store2.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const { backup } = await keys.backupKey('tp');
  t.equal(await code(keys2.restoreKey(backup)), 'DOMAIN_MISMATCH', 'no domain bound');
  await keys2.initDomain();
  t.equal(await code(keys2.restoreKey(backup)), 'DOMAIN_MISMATCH');
  // Joining the first domain (its backup key is on this token) makes the blob restorable.
  const dir3 = mkdtempSync(join(tmpdir(), 'hyokd-keys-c-'));
  const store3 = openSqliteStore({ path: join(dir3, 'm.sqlite'), synchronous: 'NORMAL' });
  const keys3 = new KeyService({ hsm, store: store3 });
  t.teardown(async () => {
    await store3.close();
    rmSync(dir3, { recursive: true, force: true });
  });
  t.equal(await code(keys3.joinDomain(domain.domainId, 'ffff')), 'KEY_NOT_FOUND');
  await keys3.joinDomain(domain.domainId, domain.backupKeyId);
  t.equal((await keys3.restoreKey(backup)).name, 'tp');
  t.equal(await code(keys3.joinDomain(domain.domainId, domain.backupKeyId)), 'DOMAIN_BOUND', 'join twice');
  t.equal(
    await code(keys2.joinDomain(domain.domainId, domain.backupKeyId)),
    'DOMAIN_BOUND',
    'join after init',
  );
});
