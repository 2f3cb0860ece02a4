// Create, resolve, rotate, enable/disable, delete/recover/purge on a real SoftHSM2 token:
// every transition, and every forbidden one with its registry code.
import t from 'tap';
import { randomBytes, createPublicKey, verify as nodeVerify, createHash } from 'node:crypto';
import { HyokError } from '../../src/errors.js';
import { DAY, keysFixture, objectsWithId, code } from './helpers.js';

const f = await keysFixture('lifecycle');
t.teardown(() => f.close());
const { keys, hsm } = f;

t.test('an AES key wraps on its primary version through the HSM', async (t) => {
  const view = await keys.createKey({ name: 'aes-a', kind: 'aes-256', tags: { team: 'x' } });
  t.equal(view.state, 'enabled');
  t.equal(view.primaryVersion, 1);
  t.same(view.operations.sort(), ['decrypt', 'encrypt', 'unwrapKey', 'wrapKey']);
  t.equal(view.origin, 'generated');
  t.equal(view.retentionDays, 90);
  t.equal(view.versions[0]!.hsmLabel, 'hyokd:aes-a:v1');
  t.equal(view.versions[0]!.hsmObjectId.length, 32);
  const u = await keys.forWrap('aes-a', 'wrapKey');
  t.equal(u.version, 1);
  t.equal(u.ref.cls, 'secret');
  const dek = randomBytes(32);
  const enc = await hsm.run({ op: 'encrypt', key: u.ref, plaintext: dek });
  const back = await keys.forUnwrap('aes-a', 1, 'unwrapKey');
  const dec = await hsm.run({ op: 'decrypt', key: back.ref, iv: enc.iv, ciphertext: enc.ciphertext });
  t.ok(dec.plaintext.equals(dek));
  // The object is sensitive and not extractable.
  const { handles } = await hsm.run({ op: 'find', cls: 'secret', id: u.ref.id });
  const a = (await hsm.run({ op: 'getAttributes', handle: handles[0]! })).attrs;
  t.equal(a.sensitive, true);
  t.equal(a.extractable, false);
});

t.test('RSA and EC pairs publish their SPKI and sign with the private half', async (t) => {
  const rsa = await keys.createKey({ name: 'rsa-a', kind: 'rsa-3072' });
  const spki = rsa.versions[0]!.publicKeySpki!;
  const pub = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  t.equal(pub.asymmetricKeyDetails?.modulusLength, 3072);
  const ec = await keys.createKey({ name: 'ec-a', kind: 'ec-p256' });
  const u = await keys.forWrap('ec-a', 'sign');
  t.ok(u.publicRef);
  t.ok(u.publicKeySpki?.equals(ec.versions[0]!.publicKeySpki!));
  const digest = createHash('sha256').update('hello').digest();
  const sig = await hsm.run({ op: 'sign', key: u.ref, mechanism: 'ECDSA', data: digest });
  const ecPub = createPublicKey({ key: u.publicKeySpki!, format: 'der', type: 'spki' });
  t.ok(nodeVerify(null, Buffer.from('hello'), { key: ecPub, dsaEncoding: 'ieee-p1363' }, sig.signature));
  t.equal(await code(keys.forWrap('ec-a', 'wrapKey')), 'KEY_KIND_MISMATCH');
});

t.test('bad input to createKey', async (t) => {
  t.equal(await code(keys.createKey({ name: 'aes-a', kind: 'aes-256' })), 'KEY_EXISTS');
  t.equal(await code(keys.createKey({ name: '-bad', kind: 'aes-256' })), 'KEY_NAME_INVALID');
  t.equal(await code(keys.createKey({ name: 'r6', kind: 'aes-256', retentionDays: 6 })), 'RETENTION_RANGE');
  t.equal(await code(keys.createKey({ name: 'r91', kind: 'aes-256', retentionDays: 91 })), 'RETENTION_RANGE');
  t.equal(await code(keys.createKey({ name: 'k', kind: 'des' as never })), 'INVALID_REQUEST');
  t.equal(
    await code(keys.createKey({ name: 'k', kind: 'ec-p256', operations: ['wrapKey'] })),
    'INVALID_REQUEST',
  );
  t.equal(await code(keys.describe('k')), 'KEY_NOT_FOUND');
});

t.test('operations the key does not allow are refused', async (t) => {
  await keys.createKey({ name: 'enc-only', kind: 'aes-256', operations: ['encrypt', 'decrypt'] });
  t.equal(await code(keys.forWrap('enc-only', 'wrapKey')), 'OPERATION_NOT_ALLOWED');
  t.equal(await code(keys.forUnwrap('enc-only', 1, 'unwrapKey')), 'OPERATION_NOT_ALLOWED');
  t.equal((await keys.forWrap('enc-only', 'encrypt')).version, 1);
  t.equal(await code(keys.forWrap('nope', 'encrypt')), 'KEY_NOT_FOUND');
});

t.test('rotation: new primary, old versions unwrap only', async (t) => {
  await keys.createKey({ name: 'rot', kind: 'aes-256' });
  const v1 = await keys.forWrap('rot', 'wrapKey');
  const dek = randomBytes(32);
  const enc = await hsm.run({ op: 'encrypt', key: v1.ref, plaintext: dek });
  const r = await keys.rotateKey('rot');
  t.equal(r.newVersion, 2);
  t.equal(r.key.primaryVersion, 2);
  t.equal(r.key.versions[1]!.hsmLabel, 'hyokd:rot:v2');
  const w = await keys.forWrap('rot', 'wrapKey');
  t.equal(w.version, 2);
  t.not(w.ref.id.toString('hex'), v1.ref.id.toString('hex'));
  const old = await keys.forUnwrap('rot', 1, 'unwrapKey');
  const dec = await hsm.run({ op: 'decrypt', key: old.ref, iv: enc.iv, ciphertext: enc.ciphertext });
  t.ok(dec.plaintext.equals(dek));
  t.equal(await code(keys.forUnwrap('rot', 3, 'unwrapKey')), 'VERSION_NOT_FOUND');
  t.equal(await code(keys.forUnwrap('rot', 0, 'unwrapKey')), 'VERSION_NOT_FOUND');
});

t.test('disable key / version takes effect on the very next call', async (t) => {
  await keys.createKey({ name: 'dis', kind: 'aes-256' });
  await keys.rotateKey('dis');
  t.equal((await keys.forWrap('dis', 'wrapKey')).version, 2);
  await keys.setKeyState('dis', false);
  t.equal(await code(keys.forWrap('dis', 'wrapKey')), 'KEY_DISABLED');
  t.equal(await code(keys.forUnwrap('dis', 1, 'unwrapKey')), 'KEY_DISABLED');
  await keys.setKeyState('dis', true);
  t.equal((await keys.forUnwrap('dis', 1, 'unwrapKey')).version, 1);
  await keys.setKeyState('dis', false, 1);
  t.equal(await code(keys.forUnwrap('dis', 1, 'unwrapKey')), 'VERSION_DISABLED');
  t.equal((await keys.forUnwrap('dis', 2, 'unwrapKey')).version, 2);
  t.equal(
    await code(keys.setKeyState('dis', false, 2)),
    'INVALID_REQUEST',
    'primary cannot be disabled alone',
  );
  t.equal(await code(keys.setKeyState('dis', false, 9)), 'VERSION_NOT_FOUND');
  await keys.setKeyState('dis', true, 1);
  t.equal((await keys.forUnwrap('dis', 1, 'unwrapKey')).version, 1);
});

t.test('an expired key refuses new wraps but still unwraps', async (t) => {
  await keys.createKey({ name: 'exp', kind: 'aes-256', rotation: { expiresAt: f.clock.now + DAY } });
  t.equal((await keys.forWrap('exp', 'wrapKey')).version, 1);
  f.clock.now += 2 * DAY;
  try {
    await keys.forWrap('exp', 'wrapKey');
    t.fail('expected KEY_DISABLED');
  } catch (e) {
    t.equal((e as HyokError).code, 'KEY_DISABLED');
    t.equal((e as HyokError).metadata.reason, 'expired');
  }
  t.equal((await keys.forUnwrap('exp', 1, 'unwrapKey')).version, 1);
  await keys.setRotationPolicy('exp', null);
  t.equal((await keys.forWrap('exp', 'wrapKey')).version, 1);
});

t.test('soft delete: only describe, list, recover, purge', async (t) => {
  const created = await keys.createKey({ name: 'del', kind: 'rsa-3072', retentionDays: 7 });
  const ckaId = created.versions[0]!.hsmObjectId;
  const d = await keys.deleteKey('del');
  t.equal(d.state, 'soft-deleted');
  t.equal(d.scheduledPurgeAt, f.clock.now + 7 * DAY);
  t.equal(await code(keys.forWrap('del', 'decrypt')), 'KEY_DELETED');
  t.equal(await code(keys.forUnwrap('del', 1, 'decrypt')), 'KEY_DELETED');
  t.equal(await code(keys.rotateKey('del')), 'KEY_DELETED');
  t.equal(await code(keys.setKeyState('del', true)), 'KEY_DELETED');
  t.equal(await code(keys.setTags('del', { tags: { a: 'b' } })), 'KEY_DELETED');
  t.equal(await code(keys.deleteKey('del')), 'KEY_DELETED');
  t.equal(await code(keys.createKey({ name: 'del', kind: 'aes-256' })), 'KEY_EXISTS');
  t.equal((await keys.describe('del')).state, 'soft-deleted');
  const listed = await keys.listKeys({ includeDeleted: true });
  t.ok(listed.keys.some((k) => k.name === 'del'));
  t.notOk((await keys.listKeys()).keys.some((k) => k.name === 'del'));
  const rec = await keys.recoverKey('del');
  t.equal(rec.state, 'enabled');
  t.equal(await code(keys.recoverKey('del')), 'KEY_NOT_DELETED');
  t.equal(await code(keys.purgeKey('del')), 'KEY_NOT_DELETED');
  t.equal((await keys.forWrap('del', 'decrypt')).version, 1);
  await keys.deleteKey('del');
  t.equal(await objectsWithId(hsm, ckaId), 2);
  const p = await keys.purgeKey('del');
  t.equal(p.name, 'del');
  t.equal(await objectsWithId(hsm, ckaId), 0, 'both halves destroyed');
  t.equal(await code(keys.describe('del')), 'KEY_NOT_FOUND');
  t.equal(await code(keys.recoverKey('del')), 'KEY_NOT_FOUND');
});

t.test('purge protection forbids purge before retention ends, and never turns off', async (t) => {
  const k = await keys.createKey({ name: 'prot', kind: 'aes-256', retentionDays: 7, purgeProtection: true });
  const ckaId = k.versions[0]!.hsmObjectId;
  await keys.deleteKey('prot');
  t.equal(await code(keys.purgeKey('prot')), 'PURGE_PROTECTED');
  f.clock.now += 6 * DAY;
  t.equal(await code(keys.purgeKey('prot')), 'PURGE_PROTECTED');
  t.equal(await objectsWithId(hsm, ckaId), 1);
  f.clock.now += DAY;
  await keys.purgeKey('prot');
  t.equal(await objectsWithId(hsm, ckaId), 0);
});

t.test('the scheduled purge removes keys whose retention ended and reports each', async (t) => {
  const a = await keys.createKey({ name: 'sched-a', kind: 'aes-256', retentionDays: 7 });
  await keys.createKey({ name: 'sched-b', kind: 'aes-256', retentionDays: 30 });
  await keys.deleteKey('sched-a');
  await keys.deleteKey('sched-b');
  f.events.length = 0;
  t.same(await keys.purgeExpired(f.clock.now + 6 * DAY), []);
  f.clock.now += 8 * DAY;
  t.same(await keys.purgeExpired(), ['sched-a']);
  t.equal(await objectsWithId(hsm, a.versions[0]!.hsmObjectId), 0);
  t.equal(f.events.length, 1);
  t.equal(f.events[0]!.type, 'key.purged');
  t.equal(f.events[0]!.keyName, 'sched-a');
  t.equal((await keys.describe('sched-b')).state, 'soft-deleted');
});

t.test('rotation by policy and its notice', async (t) => {
  await keys.createKey({
    name: 'auto',
    kind: 'aes-256',
    rotation: { rotationPeriodDays: 30, notifyBeforeDays: 5 },
  });
  const view = await keys.describe('auto');
  t.equal(view.nextRotationAt, view.versions[0]!.createdAt + 30 * DAY);
  f.events.length = 0;
  f.clock.now += 26 * DAY;
  t.same(await keys.rotateDue(), []);
  t.same(
    f.events.map((e) => e.type),
    ['key.rotation-due'],
  );
  await keys.rotateDue();
  t.equal(f.events.length, 1, 'notified once');
  f.clock.now += 4 * DAY;
  t.same(await keys.rotateDue(), ['auto']);
  t.equal((await keys.describe('auto')).primaryVersion, 2);
  t.ok(f.events.some((e) => e.type === 'key.rotated' && e.keyName === 'auto'));
  t.same(await keys.rotateDue(), [], 'not again until the new version ages');
});

t.test('the scheduler runs jobs on an interval and stops', async (t) => {
  await keys.createKey({ name: 'tick', kind: 'aes-256', retentionDays: 7 });
  await keys.deleteKey('tick');
  f.clock.now += 8 * DAY;
  keys.startScheduler({ intervalMs: 20 });
  for (let i = 0; i < 100 && (await f.store.getKey('tick')); i++) await new Promise((r) => setTimeout(r, 20));
  await keys.stop();
  t.equal(await f.store.getKey('tick'), null);
});

t.test('tags merge, replace, remove; list filters and pages', async (t) => {
  await keys.createKey({ name: 'tag-1', kind: 'aes-256', tags: { env: 'prod', team: 'a' } });
  await keys.createKey({ name: 'tag-2', kind: 'aes-256', tags: { env: 'prod' } });
  let v = await keys.setTags('tag-1', { tags: { owner: 'z' }, remove: ['team'] });
  t.same(v.tags, { env: 'prod', owner: 'z' });
  v = await keys.setTags('tag-1', { tags: { only: '1' }, replace: true });
  t.same(v.tags, { only: '1' });
  const prod = await keys.listKeys({ tagFilter: { env: 'prod' } });
  t.same(
    prod.keys.map((k) => k.name),
    ['tag-2'],
  );
  const p1 = await keys.listKeys({ pageSize: 2 });
  t.equal(p1.keys.length, 2);
  t.not(p1.nextPageToken, '');
  const p2 = await keys.listKeys({ pageSize: 2, pageToken: p1.nextPageToken });
  t.ok(p2.keys[0]!.name > p1.keys[1]!.name);
  t.equal(await code(keys.listKeys({ pageToken: '!!!' })), 'INVALID_REQUEST');
});

t.test('purge protection can be turned on but is sticky', async (t) => {
  await keys.createKey({ name: 'pp', kind: 'aes-256' });
  const v = await keys.enablePurgeProtection('pp');
  t.equal(v.purgeProtection, true);
  t.equal((await keys.enablePurgeProtection('pp')).purgeProtection, true);
});
