// Authorization on the admin plane: every KeyAdmin RPC is refused for the data-plane
// client identity (PERMISSION_DENIED naming the rule, audited, nothing changed), and a
// key-scoped administrator is limited to its keys and to per-key RPCs.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { call, reasonOf, settle } from './fixtures.js';
import { adminRecords, errorMetadata, SCOPED_ID, startAdminHarness } from './admin-harness.js';

const h = await startAdminHarness({ keys: ['demo', 'team-a-1'] });
t.teardown(() => h.close());
const client = h.admin(h.clientCert);
const scoped = h.admin(h.scopedCert);

const { domainId } = await h.keys.initDomain();
await h.keys.createKey({ name: 'bk', kind: 'aes-256', backupable: true });
const backup = (await h.keys.backupKey('bk')).backup;
const ik = await h.keys.createImportKey();

// One valid request per RPC: only the identity makes it fail.
const REQUESTS: [string, Record<string, unknown>][] = [
  ['CreateKey', { name: 'new-key', kind: 'AES_256' }],
  ['ListKeys', {}],
  ['GetKey', { name: 'demo' }],
  ['RotateKey', { name: 'demo' }],
  ['SetKeyState', { name: 'demo', enabled: false }],
  ['DeleteKey', { name: 'demo' }],
  ['RecoverKey', { name: 'demo' }],
  ['PurgeKey', { name: 'demo' }],
  ['AdoptKey', { name: 'adopted', kind: 'AES_256', hsmLabel: 'whatever' }],
  ['BackupKey', { name: 'bk' }],
  ['RestoreKey', { backup }],
  ['CreateImportKey', {}],
  [
    'ImportKey',
    { name: 'imp', kind: 'AES_256', importKeyId: ik.importKeyId, wrappedKeyMaterial: randomBytes(64) },
  ],
  ['SetRotationPolicy', { name: 'demo', rotationPolicy: { rotateAfter: { seconds: String(86400) } } }],
  ['SetTags', { name: 'demo', tags: { a: 'b' } }],
  ['GetPolicy', {}],
  ['SetPolicy', { document: 'version: 1\n' }],
  ['ExplainPolicy', { operation: 'get' }],
  ['EnablePurgeProtection', { name: 'demo' }],
  ['InitSecurityDomain', {}],
  ['JoinSecurityDomain', { domainId: 'another-domain', backupKeyId: 'ab'.repeat(16) }],
  ['GetSecurityDomain', {}],
];

t.test('the admin proto has exactly these RPCs', async (t) => {
  const { adminServiceDefinition } = await import('../../src/server/admin-proto.js');
  t.same(Object.keys(adminServiceDefinition()).sort(), REQUESTS.map(([m]) => m).sort());
});

t.test('every RPC is refused for the client identity, with the deciding rule, and audited', async (t) => {
  const policyBefore = readFileSync(h.policyFile, 'utf8');
  const keysBefore = await h.keys.listKeys({ includeDeleted: true });
  for (const [method, req] of REQUESTS) {
    const requestId = `denied-${method}`;
    const [e] = await settle(call(client, method, { ...req, requestId }));
    t.equal(e?.code, 7, `${method}: PERMISSION_DENIED`);
    t.equal(reasonOf(e), 'PERMISSION_DENIED', method);
    t.equal(errorMetadata(e).rule, 'default-deny', `${method}: the rule is named`);
  }
  const recs = await h.auditTail(500);
  for (const [method, req] of REQUESTS) {
    const rec = adminRecords(recs, method).find((r) => r.requestId === `denied-${method}`);
    t.ok(rec, `${method}: audited`);
    t.same(rec?.decision, { allowed: false, rule: 'default-deny' }, `${method}: decision audited`);
    t.same(rec?.result, { code: 'PERMISSION_DENIED' });
    t.equal((rec?.identity as { san: string }).san, 'spiffe://hyokd.dev/client');
    if (typeof req.name === 'string') t.same(rec?.key, { name: req.name }, `${method}: key audited`);
  }
  t.same(await h.keys.listKeys({ includeDeleted: true }), keysBefore, 'no key changed');
  t.equal(readFileSync(h.policyFile, 'utf8'), policyBefore, 'policy file unchanged');
  t.equal((await h.store.listPendingRequests()).length, 0, 'nothing was held for quorum');
  t.equal(
    h.calls.filter((c) => c.service === 'hyok.admin.v1.KeyAdmin' && c.status === 'PERMISSION_DENIED').length,
    22,
  );
});

t.test('a key-scoped admin manages its keys only, and cannot touch key-less RPCs', async (t) => {
  const ok = await call<{ key: { name: string } }>(scoped, 'CreateKey', {
    name: 'team-a-2',
    kind: 'AES_256',
  });
  t.equal(ok.key.name, 'team-a-2');
  await call(scoped, 'RotateKey', { name: 'team-a-1' });
  await call(scoped, 'DeleteKey', { name: 'team-a-2' });
  await call(scoped, 'RecoverKey', { name: 'team-a-2' });
  for (const [method, req] of [
    ['CreateKey', { name: 'team-b-1', kind: 'AES_256' }],
    ['GetKey', { name: 'demo' }],
    ['ListKeys', {}],
    ['GetPolicy', {}],
    ['SetPolicy', { document: 'version: 1\n' }],
    ['BackupKey', { name: 'team-a-1' }],
    ['EnablePurgeProtection', { name: 'demo' }],
    ['InitSecurityDomain', {}],
    ['GetSecurityDomain', {}],
  ] as const) {
    const [e] = await settle(call(scoped, method, req));
    t.equal(e?.code, 7, `${method} refused for ${SCOPED_ID}`);
  }
  const recs = await h.auditTail(200);
  const rot = adminRecords(recs, 'RotateKey').find((r) => (r.identity as { san: string }).san === SCOPED_ID);
  t.same(rot?.decision, { allowed: true, rule: 'binding[2]:key-admin' });
});

t.test('the refused RestoreKey did not restore, and the domain is still the one bound', async (t) => {
  t.equal((await h.store.getDomain())?.domainId, domainId);
  t.equal((await h.keys.describe('bk')).versions.length, 1);
});
