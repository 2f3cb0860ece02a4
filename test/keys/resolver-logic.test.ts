// Logic above the HSM, on the in-memory fake backend and a ':memory:' store: the hot path
// makes no HSM call and reads state per call; failed HSM steps leave nothing behind;
// lifecycle calls on one key are serialized; reconcile handles every intent kind.
import t from 'tap';
import { code } from './helpers.js';
import { FakeHsmBackend } from '../../src/hsm/fake-backend.js';
import { openSqliteStore } from '../../src/store/index.js';
import { KeyService } from '../../src/keys/key-service.js';
import { HyokError } from '../../src/errors.js';

function setup() {
  const hsm = new FakeHsmBackend();
  const store = openSqliteStore({ path: ':memory:' });
  const keys = new KeyService({ hsm, store });
  return { hsm, store, keys };
}

function total(ops: Record<string, number>): number {
  return Object.values(ops).reduce((a, b) => a + b, 0);
}

t.test('forWrap/forUnwrap never call the HSM and see changes at once', async (t) => {
  const { hsm, store, keys } = setup();
  await keys.createKey({ name: 'k', kind: 'aes-256' });
  const before = total(hsm.counters().ops);
  for (let i = 0; i < 200; i++) {
    await keys.forWrap('k', 'wrapKey');
    await keys.forUnwrap('k', 1, 'unwrapKey');
  }
  t.equal(total(hsm.counters().ops), before, 'no HSM operation on the hot path');
  // A change made straight in the store (e.g. by another admin process) is seen at once.
  await store.setKeyState('k', 'disabled');
  t.equal(await code(keys.forWrap('k', 'wrapKey')), 'KEY_DISABLED');
  await store.setKeyState('k', 'enabled');
  t.equal((await keys.forWrap('k', 'wrapKey')).version, 1);
});

t.test('a failed HSM step leaves neither metadata nor an open intent', async (t) => {
  const { hsm, store, keys } = setup();
  hsm.injectFault('CKR_TEMPLATE_INCONSISTENT', 1, { op: 'generateKey' });
  t.equal(await code(keys.createKey({ name: 'k', kind: 'aes-256' })), 'INTERNAL');
  t.equal(await store.getKey('k'), null);
  t.same(await store.listOpenIntents(), []);
  await keys.createKey({ name: 'k', kind: 'aes-256' });
  hsm.injectFault('CKR_TEMPLATE_INCONSISTENT', 1, { op: 'generateKey' });
  t.equal(await code(keys.rotateKey('k')), 'INTERNAL');
  t.equal((await store.listVersions('k')).length, 1);
  t.same(await store.listOpenIntents(), []);
});

t.test('a failed purge destroy keeps the intent for reconcile', async (t) => {
  const { hsm, store, keys } = setup();
  await keys.createKey({ name: 'k', kind: 'aes-256' });
  await keys.deleteKey('k');
  hsm.injectFault('CKR_DEVICE_ERROR', 1, { op: 'destroy' });
  t.not(await code(keys.purgeKey('k')), 'no error');
  t.equal((await store.getKey('k'))?.state, 'soft-deleted');
  t.equal((await store.listOpenIntents()).length, 1);
  const actions = await keys.reconcile();
  t.same(
    actions.map((a) => a.action),
    ['completed'],
  );
  t.equal(await store.getKey('k'), null);
});

t.test('concurrent rotations of one key are serialized', async (t) => {
  const { keys } = setup();
  await keys.createKey({ name: 'k', kind: 'aes-256' });
  const r = await Promise.all([keys.rotateKey('k'), keys.rotateKey('k'), keys.rotateKey('k')]);
  t.same(r.map((x) => x.newVersion).sort(), [2, 3, 4]);
  t.equal((await keys.describe('k')).versions.length, 4);
});

t.test('reconcile: every intent kind', async (t) => {
  const { hsm, store } = setup();
  const id = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const gen = async (i: Buffer) =>
    hsm.run({ op: 'generateKey', keyBits: 256, spec: { id: i, label: 'x', usage: { encrypt: true } } });
  await gen(id);
  await store.beginIntent('import', 'imp', { ckaId: id.toString('hex'), kind: 'aes-256' });
  const id2 = Buffer.from('ff112233445566778899aabbccddeeff', 'hex');
  await gen(id2);
  await store.beginIntent('import-key', null, { ckaId: id2.toString('hex') });
  const id3 = Buffer.from('ee112233445566778899aabbccddeeff', 'hex');
  await gen(id3);
  await store.beginIntent('domain', null, { ckaId: id3.toString('hex'), domainId: 'd' });
  const id4 = Buffer.from('dd112233445566778899aabbccddeeff', 'hex');
  await gen(id4);
  await store.beginIntent('adopt', 'ad', { ckaId: id4.toString('hex') });
  await store.beginIntent('mystery', null, {});
  const events: string[] = [];
  const k2 = new KeyService({
    hsm,
    store,
    audit: async (e) => void events.push(`${e.type}:${String(e.detail.action)}`),
  });
  const actions = await k2.reconcile();
  t.same(
    actions.map((a) => [a.kind, a.action]),
    [
      ['import', 'rolled-back'],
      ['import-key', 'rolled-back'],
      ['domain', 'rolled-back'],
      ['adopt', 'cleared'],
      ['mystery', 'left-open'],
    ],
  );
  for (const i of [id, id2, id3]) t.same((await hsm.run({ op: 'find', id: i })).handles, []);
  t.equal(
    (await hsm.run({ op: 'find', id: id4 })).handles.length,
    1,
    "an adopted object is the owner's: kept",
  );
  t.same(
    (await store.listOpenIntents()).map((i) => i.kind),
    ['mystery'],
  );
  t.equal(events.length, 5);
  t.equal(await store.getDomain(), null);
});

t.test('the one-statement key+version read and the two-read fallback give the same answers', async (t) => {
  const { hsm, store } = setup();
  // The same store without getKeyWithVersion: KeyService falls back to getKey + getVersion.
  const plain = new Proxy(store, {
    get(target, prop) {
      if (prop === 'getKeyWithVersion') return undefined;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const joined = new KeyService({ hsm, store });
  const twoReads = new KeyService({ hsm, store: plain });
  await joined.createKey({ name: 'k', kind: 'aes-256' });
  await joined.rotateKey('k');
  await store.setVersionState('k', 1, 'disabled');
  const both = async (f: (k: KeyService) => Promise<{ version: number; ref: unknown }>) => {
    const r = await Promise.all(
      [joined, twoReads].map(async (k) => {
        try {
          const u = await f(k);
          return `ok v${u.version} ${JSON.stringify(u.ref)}`;
        } catch (e) {
          if (e instanceof HyokError) return e.code;
          throw e;
        }
      }),
    );
    t.equal(r[0], r[1], 'same answer on both paths');
    return r[0];
  };
  t.match(await both((k) => k.forWrap('k', 'wrapKey')), /^ok v2 /);
  t.match(await both((k) => k.forUnwrap('k', 2, 'unwrapKey')), /^ok v2 /);
  t.equal(await both((k) => k.forUnwrap('k', 1, 'unwrapKey')), 'VERSION_DISABLED');
  t.equal(await both((k) => k.forUnwrap('k', 3, 'unwrapKey')), 'VERSION_NOT_FOUND');
  t.equal(await both((k) => k.forUnwrap('k', 0, 'unwrapKey')), 'VERSION_NOT_FOUND');
  t.equal(await both((k) => k.forUnwrap('k', 1.5, 'unwrapKey')), 'VERSION_NOT_FOUND');
  t.equal(await both((k) => k.forUnwrap('nope', 1, 'unwrapKey')), 'KEY_NOT_FOUND');
  t.equal(await both((k) => k.forWrap('nope', 'wrapKey')), 'KEY_NOT_FOUND');
  t.equal(await both((k) => k.forUnwrap('k', 2, 'sign')), 'KEY_KIND_MISMATCH');
  await store.setKeyState('k', 'disabled');
  t.equal(await both((k) => k.forUnwrap('k', 2, 'unwrapKey')), 'KEY_DISABLED');
  t.equal(await both((k) => k.forWrap('k', 'wrapKey')), 'KEY_DISABLED');
});
