// EnablePurgeProtection over the wire: turns protection on (update permission, audited),
// is idempotent, cannot be turned off by any RPC (no request can carry "off" for an
// existing key, and every RPC that touches a key leaves it on), and a protected key's
// purge is refused before its retention period ends.
import t from 'tap';
import { adminPackageDefinition } from '../../src/server/admin-proto.js';
import { call, reasonOf, settle } from './fixtures.js';
import { adminRecords, startAdminHarness } from './admin-harness.js';

interface KeyRes {
  key: { name: string; state: string; purgeProtection: boolean; retentionDays: number };
}

const h = await startAdminHarness({ keys: ['demo', 'team-a-1', 'life'] });
t.teardown(() => h.close());
const a = h.admin();

t.test('turns protection on, audited; a second call changes nothing', async (t) => {
  t.equal((await h.keys.describe('life')).purgeProtection, false, 'created unprotected');
  const r = await call<KeyRes>(a, 'EnablePurgeProtection', { name: 'life', requestId: 'protect-1' });
  t.equal(r.key.purgeProtection, true);
  t.equal((await h.keys.describe('life')).purgeProtection, true, 'stored');
  const updatedAt = (await h.keys.describe('life')).updatedAt;
  const again = await call<KeyRes>(a, 'EnablePurgeProtection', { name: 'life', requestId: 'protect-2' });
  t.equal(again.key.purgeProtection, true, 'idempotent');
  t.equal((await h.keys.describe('life')).updatedAt, updatedAt, 'the second call wrote nothing');
  const recs = adminRecords(await h.auditTail(), 'EnablePurgeProtection');
  const first = recs.find((x) => x.requestId === 'protect-1');
  t.same(first?.decision, { allowed: true, rule: 'binding[1]:all' });
  t.same(first?.key, { name: 'life', version: 1 });
  t.same(first?.details, { changed: true });
  t.same(recs.find((x) => x.requestId === 'protect-2')?.details, { changed: false });
});

t.test('no request can turn it off', async (t) => {
  // Only requests that create a new key carry purge_protection; this RPC has no flag.
  const def = adminPackageDefinition() as unknown as Record<
    string,
    { type?: { field?: { name: string }[] } }
  >;
  const carriers = Object.entries(def)
    .filter(([n, v]) => n.startsWith('hyok.admin.v1.') && n.endsWith('Request') && v.type?.field)
    .filter(([, v]) =>
      v.type!.field!.some((f) => f.name.replace(/_/g, '').toLowerCase() === 'purgeprotection'),
    )
    .map(([n]) => n.slice('hyok.admin.v1.'.length))
    .sort();
  t.same(carriers, ['AdoptKeyRequest', 'CreateKeyRequest', 'ImportKeyRequest']);
  t.same(
    def['hyok.admin.v1.EnablePurgeProtectionRequest']?.type?.field?.map((f) => f.name),
    ['requestId', 'context', 'name'],
    'EnablePurgeProtection takes a name, nothing else',
  );

  const [exists] = await settle(
    call(a, 'CreateKey', { name: 'life', kind: 'AES_256', purgeProtection: false }),
  );
  t.equal(reasonOf(exists), 'KEY_EXISTS', 'a create of the same name cannot reset it');
  await call(a, 'RotateKey', { name: 'life' });
  await call(a, 'SetKeyState', { name: 'life', enabled: false });
  await call(a, 'SetKeyState', { name: 'life', enabled: true });
  await call(a, 'SetTags', { name: 'life', tags: { purgeProtection: 'false' } });
  await call(a, 'SetRotationPolicy', { name: 'life', rotationPolicy: null });
  await call(a, 'DeleteKey', { name: 'life' });
  await call(a, 'RecoverKey', { name: 'life' });
  const g = await call<KeyRes>(a, 'GetKey', { name: 'life' });
  t.equal(g.key.purgeProtection, true, 'still on after every RPC that touches the key');
});

t.test('purge of a protected key is refused before its retention period ends', async (t) => {
  await call(a, 'EnablePurgeProtection', { name: 'demo' });
  const d = await call<KeyRes & { key: { scheduledPurgeTime: { seconds: string } } }>(a, 'DeleteKey', {
    name: 'demo',
  });
  t.ok(Number(d.key.scheduledPurgeTime.seconds) * 1000 > Date.now(), 'retention still running');
  const [e] = await settle(call(a, 'PurgeKey', { name: 'demo' }));
  t.equal(e?.code, 9, 'FAILED_PRECONDITION');
  t.equal(reasonOf(e), 'PURGE_PROTECTED');
  t.equal((await h.keys.describe('demo')).state, 'soft-deleted', 'the key is still there');
  const r = await call<KeyRes>(a, 'RecoverKey', { name: 'demo' });
  t.equal(r.key.state, 'ENABLED');
});

t.test('permission update on the key; unknown and malformed names', async (t) => {
  const scoped = h.admin(h.scopedCert);
  const ok = await call<KeyRes>(scoped, 'EnablePurgeProtection', { name: 'team-a-1' });
  t.equal(ok.key.purgeProtection, true, 'a key-scoped admin may protect its own key');
  const [other] = await settle(call(scoped, 'EnablePurgeProtection', { name: 'demo-2' }));
  t.equal(other?.code, 7, 'but not a key outside its scope');
  const [client] = await settle(call(h.admin(h.clientCert), 'EnablePurgeProtection', { name: 'life' }));
  t.equal(client?.code, 7);
  const [missing] = await settle(call(a, 'EnablePurgeProtection', { name: 'nope' }));
  t.equal(missing?.code, 5);
  t.equal(reasonOf(missing), 'KEY_NOT_FOUND');
  const [bad] = await settle(call(a, 'EnablePurgeProtection', { name: 'a b' }));
  t.equal(reasonOf(bad), 'KEY_NAME_INVALID');
});
