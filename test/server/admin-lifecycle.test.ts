// A key's whole lifecycle driven over the admin API while the data plane uses it:
// create → rotate → disable (the very next Unwrap is refused) → enable → delete (the data
// plane refuses) → recover → purge refused under purge protection.
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { call, reasonOf, settle } from './fixtures.js';
import { startAdminHarness } from './admin-harness.js';

const h = await startAdminHarness({ keys: [] });
t.teardown(() => h.close());
const a = h.admin();
const c = h.hyok();

interface KeyRes {
  key: { name: string; state: string; primaryVersion: number; purgeProtection: boolean; versions: unknown[] };
}

t.test('lifecycle over the wire', async (t) => {
  const created = await call<KeyRes>(a, 'CreateKey', {
    name: 'life',
    kind: 'AES_256',
    purgeProtection: true,
    retentionDays: 7,
  });
  t.equal(created.key.purgeProtection, true);

  const dek1 = randomBytes(32);
  const w1 = await call<{ envelope: Buffer; keyVersion: number }>(c, 'Wrap', {
    keyName: 'life',
    plaintextDek: dek1,
  });
  t.equal(w1.keyVersion, 1);

  const rotated = await call<KeyRes & { newVersion: number }>(a, 'RotateKey', { name: 'life' });
  t.equal(rotated.newVersion, 2);
  const dek2 = randomBytes(32);
  const w2 = await call<{ envelope: Buffer; keyVersion: number }>(c, 'Wrap', {
    keyName: 'life',
    plaintextDek: dek2,
  });
  t.equal(w2.keyVersion, 2, 'new wraps use the new primary');
  t.same(
    (await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: w1.envelope })).plaintextDek,
    dek1,
    'the old version still unwraps',
  );

  // Disable, then the very next data-plane call is refused: no cache window.
  await call(a, 'SetKeyState', { name: 'life', enabled: false });
  const [off] = await settle(call(c, 'Unwrap', { envelope: w2.envelope }));
  t.equal(off?.code, 9);
  t.equal(reasonOf(off), 'KEY_DISABLED');
  const [offWrap] = await settle(call(c, 'Wrap', { keyName: 'life', plaintextDek: dek1 }));
  t.equal(reasonOf(offWrap), 'KEY_DISABLED');

  await call(a, 'SetKeyState', { name: 'life', enabled: true });
  t.same((await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: w2.envelope })).plaintextDek, dek2);

  // Disable one old version only: envelopes of that version are refused, others work.
  await call(a, 'SetKeyState', { name: 'life', enabled: false, version: 1 });
  const [v1off] = await settle(call(c, 'Unwrap', { envelope: w1.envelope }));
  t.equal(reasonOf(v1off), 'VERSION_DISABLED');
  t.same((await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: w2.envelope })).plaintextDek, dek2);
  await call(a, 'SetKeyState', { name: 'life', enabled: true, version: 1 });

  const deleted = await call<KeyRes>(a, 'DeleteKey', { name: 'life' });
  t.equal(deleted.key.state, 'DELETED');
  const [gone] = await settle(call(c, 'Unwrap', { envelope: w2.envelope }));
  t.equal(gone?.code, 9);
  t.equal(reasonOf(gone), 'KEY_DELETED');
  const [goneWrap] = await settle(call(c, 'Wrap', { keyName: 'life', plaintextDek: dek1 }));
  t.equal(reasonOf(goneWrap), 'KEY_DELETED');

  const [purge] = await settle(call(a, 'PurgeKey', { name: 'life' }));
  t.equal(purge?.code, 9, 'purge under protection: FAILED_PRECONDITION');
  t.equal(reasonOf(purge), 'PURGE_PROTECTED');

  const recovered = await call<KeyRes>(a, 'RecoverKey', { name: 'life' });
  t.equal(recovered.key.state, 'ENABLED');
  t.same(
    (await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: w1.envelope })).plaintextDek,
    dek1,
    'recovered key unwraps its old envelopes',
  );

  // Protection survives the recovery: delete again and purge is still refused.
  await call(a, 'DeleteKey', { name: 'life' });
  const [again] = await settle(call(a, 'PurgeKey', { name: 'life' }));
  t.equal(reasonOf(again), 'PURGE_PROTECTED');
  t.equal((await h.keys.describe('life')).state, 'soft-deleted', 'the key is still there');
});

t.test('without protection, purge after delete destroys the key for good', async (t) => {
  await call(a, 'CreateKey', { name: 'short', kind: 'AES_256', retentionDays: 7 });
  const w = await call<{ envelope: Buffer }>(c, 'Wrap', { keyName: 'short', plaintextDek: randomBytes(32) });
  await call(a, 'DeleteKey', { name: 'short' });
  await call(a, 'PurgeKey', { name: 'short' });
  const [e] = await settle(call(c, 'Unwrap', { envelope: w.envelope }));
  t.equal(e?.code, 5);
  t.equal(reasonOf(e), 'KEY_NOT_FOUND');
  const [r] = await settle(call(a, 'RecoverKey', { name: 'short' }));
  t.equal(reasonOf(r), 'KEY_NOT_FOUND', 'nothing left to recover');
});
