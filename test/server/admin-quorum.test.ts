// The quorum seam, both ways: operations listed for quorum are held (stored as pending
// requests, QUORUM_REQUIRED with the id, nothing changed, audited); unlisted ones proceed;
// an approved request (approval itself comes next wave; the test sets the state in the
// store) lets the same call through once.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { DEV_ADMIN_ID } from '../../src/pki/index.js';
import { StoreQuorumGate, QUORUM_CONTEXT_KEY } from '../../src/server/quorum-gate.js';
import { call, reasonOf, settle } from './fixtures.js';
import { adminRecords, errorMetadata, startAdminHarness } from './admin-harness.js';

const h = await startAdminHarness({
  keys: ['demo', 'other', 'guarded'],
  quorum: [
    'DeleteKey',
    'PurgeKey',
    'SetPolicy',
    'DisableProtectedKey',
    'RestoreKey',
    'ImportKey',
    'BackupKey',
    'EnablePurgeProtection',
    'InitSecurityDomain',
    'JoinSecurityDomain',
  ],
});
t.teardown(() => h.close());
const a = h.admin();
await h.keys.enablePurgeProtection('guarded');

async function held(method: string, req: Record<string, unknown>): Promise<string> {
  const [e] = await settle(call(a, method, req));
  if (!e) throw new Error(`${method} was not held`);
  if (e.code !== 9 || reasonOf(e) !== 'QUORUM_REQUIRED') throw new Error(`${method}: ${e.code} ${e.details}`);
  const id = errorMetadata(e).quorumRequestId;
  if (!id) throw new Error(`${method}: no quorumRequestId`);
  return id;
}

t.test('a listed operation is held: pending request stored, nothing changed, audited', async (t) => {
  const [e] = await settle(
    call(a, 'DeleteKey', { name: 'demo', requestId: 'del-held', context: { reason: 'cleanup' } }),
  );
  t.equal(e?.code, 9, 'FAILED_PRECONDITION');
  t.equal(reasonOf(e), 'QUORUM_REQUIRED');
  const id = errorMetadata(e).quorumRequestId!;
  t.match(id, /^[0-9a-f-]{36}$/);
  const rec = await h.store.getPendingRequest(id);
  t.equal(rec?.op, 'DeleteKey');
  t.equal(rec?.keyName, 'demo');
  t.equal(rec?.requester, DEV_ADMIN_ID);
  t.equal(rec?.state, 'pending');
  t.ok(rec!.expiresAt > Date.now());
  t.equal((await h.keys.describe('demo')).state, 'enabled', 'the key was not deleted');
  const recs = await h.auditTail();
  const req = adminRecords(recs, 'DeleteKey').find((r) => r.requestId === 'del-held');
  t.same(req?.result, { code: 'QUORUM_REQUIRED' });
  t.same(req?.decision, { allowed: true, rule: 'binding[1]:all' }, 'authorized first, then held');
  t.equal((req?.details as { quorumRequestId: string }).quorumRequestId, id);
  const q = recs.find((r) => r.type === 'quorum' && r.quorumId === id);
  t.equal(q?.action, 'requested');
  t.equal(q?.op, 'DeleteKey');
});

t.test('repeating while pending returns the same id; an approved request runs once', async (t) => {
  const id = await held('DeleteKey', { name: 'other' });
  const again = await held('DeleteKey', { name: 'other', context: { [QUORUM_CONTEXT_KEY]: id } });
  t.equal(again, id, 'still pending: same request');
  t.equal((await h.store.listPendingRequests({ keyName: 'other' })).length, 1, 'no duplicate');
  await h.store.updatePendingRequest(id, 'pending', {
    state: 'approved',
    approvals: [{ approver: 'spiffe://hyokd.dev/approver-1', at: Date.now() }],
  });
  // Cited for another key: not this approval.
  const wrongKey = await held('DeleteKey', { name: 'demo', context: { [QUORUM_CONTEXT_KEY]: id } });
  t.not(wrongKey, id);
  const r = await call<{ key: { state: string } }>(a, 'DeleteKey', {
    name: 'other',
    context: { [QUORUM_CONTEXT_KEY]: id },
  });
  t.equal(r.key.state, 'DELETED', 'the approved call ran');
  t.equal((await h.store.getPendingRequest(id))?.state, 'executed', 'the approval is consumed');
  await call(a, 'RecoverKey', { name: 'other' });
  const replay = await held('DeleteKey', { name: 'other', context: { [QUORUM_CONTEXT_KEY]: id } });
  t.not(replay, id, 'one approval, one call');
  t.equal((await h.keys.describe('other')).state, 'enabled');
});

t.test('an approval from another requester does not count', async (t) => {
  const id = await held('PurgeKey', { name: 'demo' });
  await h.store.updatePendingRequest(id, 'pending', { state: 'approved' });
  const gate = new StoreQuorumGate({ store: h.store, operations: ['PurgeKey'] });
  const v = await gate.check('PurgeKey', 'demo', 'spiffe://hyokd.dev/someone-else', {
    params: {},
    context: { [QUORUM_CONTEXT_KEY]: id },
  });
  t.not(v, 'proceed');
  t.equal((await h.store.getPendingRequest(id))?.state, 'approved', 'not consumed');
});

t.test('unlisted operations proceed', async (t) => {
  const r = await call<{ newVersion: number }>(a, 'RotateKey', { name: 'demo' });
  t.equal(r.newVersion, 2);
  const s = await call<{ key: { state: string } }>(a, 'SetKeyState', { name: 'demo', enabled: false });
  t.equal(s.key.state, 'DISABLED', 'disabling an unprotected key is not held');
  await call(a, 'SetKeyState', { name: 'demo', enabled: true });
});

t.test('disabling a purge-protected key is held; enabling it is not', async (t) => {
  const id = await held('SetKeyState', { name: 'guarded', enabled: false });
  t.equal((await h.store.getPendingRequest(id))?.op, 'DisableProtectedKey');
  t.equal((await h.keys.describe('guarded')).state, 'enabled');
  const r = await call<{ key: { state: string } }>(a, 'SetKeyState', { name: 'guarded', enabled: true });
  t.equal(r.key.state, 'ENABLED');
});

t.test('EnablePurgeProtection is held when it would change the key; not when already on', async (t) => {
  const id = await held('EnablePurgeProtection', { name: 'other' });
  t.equal((await h.store.getPendingRequest(id))?.op, 'EnablePurgeProtection');
  t.equal((await h.keys.describe('other')).purgeProtection, false, 'not turned on');
  await h.store.updatePendingRequest(id, 'pending', { state: 'approved' });
  const r = await call<{ key: { purgeProtection: boolean } }>(a, 'EnablePurgeProtection', {
    name: 'other',
    context: { [QUORUM_CONTEXT_KEY]: id },
  });
  t.equal(r.key.purgeProtection, true, 'the approved call ran');
  const before = (await h.store.listPendingRequests()).length;
  const g = await call<{ key: { purgeProtection: boolean } }>(a, 'EnablePurgeProtection', {
    name: 'guarded',
  });
  t.equal(g.key.purgeProtection, true, 'already protected: returned as it is');
  t.equal((await h.store.listPendingRequests()).length, before, 'and nothing was held');
});

t.test('InitSecurityDomain and JoinSecurityDomain are held while the store is unbound', async (t) => {
  t.equal(await h.store.getDomain(), null);
  const init = await held('InitSecurityDomain', {});
  t.equal((await h.store.getPendingRequest(init))?.keyName, null, 'key-less');
  t.equal(await h.store.getDomain(), null, 'no domain was created');
  const { handles } = await h.hsm.run({ op: 'find', cls: 'secret', label: 'hyokd:domain-backup' });
  t.equal(handles.length, 0, 'no backup key was generated');
  const join = await held('JoinSecurityDomain', { domainId: 'some-domain', backupKeyId: 'ab'.repeat(16) });
  const rec = await h.store.getPendingRequest(join);
  t.same((rec?.payload as { params: unknown }).params, {
    domainId: 'some-domain',
    backupKeyId: 'ab'.repeat(16),
  });
  t.equal(await h.store.getDomain(), null, 'not joined');
});

t.test('SetPolicy, BackupKey, RestoreKey and ImportKey are held before they touch anything', async (t) => {
  const before = readFileSync(h.policyFile, 'utf8');
  const gen = h.policy.generation;
  await held('SetPolicy', { document: 'version: 1\n' });
  t.equal(readFileSync(h.policyFile, 'utf8'), before, 'policy file unchanged');
  t.equal(h.policy.generation, gen, 'policy not swapped');
  t.equal(await h.store.getCurrentPolicyDocument(), null, 'no revision stored');
  await h.keys.initDomain();
  await h.keys.createKey({ name: 'bk', kind: 'aes-256', backupable: true });
  await held('BackupKey', { name: 'bk' });
  const blob = (await h.keys.backupKey('bk')).backup;
  const rid = await held('RestoreKey', { backup: blob });
  const rec = await h.store.getPendingRequest(rid);
  t.equal(rec?.keyName, null, 'restore is key-less until the blob is opened');
  t.notMatch(JSON.stringify(rec?.payload), blob.toString('base64').slice(0, 40), 'the blob is not stored');
  const ik = await h.keys.createImportKey();
  await held('ImportKey', {
    name: 'imp',
    kind: 'AES_256',
    importKeyId: ik.importKeyId,
    wrappedKeyMaterial: Buffer.alloc(424, 1),
    wrapAlgorithm: 'RSA_AES_KEY_WRAP_SHA1',
  });
  const [g] = await settle(call(a, 'GetKey', { name: 'imp' }));
  t.equal(reasonOf(g), 'KEY_NOT_FOUND');
});

t.test('denied calls are never held', async (t) => {
  const before = (await h.store.listPendingRequests()).length;
  const [e] = await settle(call(h.admin(h.clientCert), 'DeleteKey', { name: 'demo' }));
  t.equal(e?.code, 7);
  t.equal((await h.store.listPendingRequests()).length, before);
});

t.test('ExplainPolicy reports which operations need quorum', async (t) => {
  type Explained = { quorumRequired: boolean; quorumApprovals: number; quorumOperations: string[] };
  const explain = (operation: string, keyName?: string) =>
    call<Explained>(a, 'ExplainPolicy', { operation, ...(keyName ? { keyName } : {}) });
  const p = await explain('purge', 'demo');
  t.equal(p.quorumRequired, true);
  t.equal(p.quorumApprovals, 2);
  t.same(p.quorumOperations, ['PurgeKey']);
  const r = await explain('recover', 'demo');
  t.equal(r.quorumRequired, false);
  t.same(r.quorumOperations, []);
  // One permission, several RPCs: only the held ones are named (this harness holds
  // DisableProtectedKey and EnablePurgeProtection, not RotateKey).
  t.same((await explain('update', 'demo')).quorumOperations, [
    'EnablePurgeProtection',
    'DisableProtectedKey',
  ]);
  t.same((await explain('update')).quorumOperations, ['SetPolicy'], 'key-less update is SetPolicy');
  t.same(
    (await explain('restore')).quorumOperations,
    ['RestoreKey', 'InitSecurityDomain', 'JoinSecurityDomain'],
    'the domain RPCs need restore',
  );
  t.same((await explain('import', 'demo')).quorumOperations, ['ImportKey'], 'AdoptKey is not held here');
  t.same((await explain('get', 'demo')).quorumOperations, []);
});

t.test('each held RPC is covered by the permission ExplainPolicy names for it', async (t) => {
  // The RPCs this harness holds, each called as it would be, and the permission (and key
  // or not) its handler authorizes: ExplainPolicy must list it there.
  const cases: Array<[string, string, string | undefined, Record<string, unknown>]> = [
    ['DeleteKey', 'delete', 'demo', { name: 'demo' }],
    ['PurgeKey', 'purge', 'demo', { name: 'demo' }],
    ['BackupKey', 'backup', 'demo', { name: 'demo' }],
    ['EnablePurgeProtection', 'update', 'demo', { name: 'demo' }],
    ['DisableProtectedKey', 'update', 'guarded', { name: 'guarded', enabled: false }],
    ['JoinSecurityDomain', 'restore', undefined, { domainId: 'another', backupKeyId: 'ab' }],
  ];
  const method: Record<string, string> = { DisableProtectedKey: 'SetKeyState' };
  for (const [op, permission, keyName, req] of cases) {
    const id = await held(method[op] ?? op, req);
    t.equal((await h.store.getPendingRequest(id))?.op, op, `${op} is held`);
    const ex = await call<{ quorumOperations: string[] }>(a, 'ExplainPolicy', {
      operation: permission,
      ...(keyName ? { keyName } : {}),
    });
    t.ok(ex.quorumOperations.includes(op), `${permission}${keyName ? ' on a key' : ''} lists ${op}`);
  }
});

t.test('the default gate holds nothing, and unknown operations are refused at configuration', async (t) => {
  const gate = new StoreQuorumGate({ store: h.store });
  const before = (await h.store.listPendingRequests()).length;
  t.equal(await gate.check('PurgeKey', 'demo', DEV_ADMIN_ID, { params: {}, context: {} }), 'proceed');
  t.equal((await h.store.listPendingRequests()).length, before);
  t.throws(
    () => new StoreQuorumGate({ store: h.store, operations: ['Fly' as never] }),
    /unknown quorum operation/,
  );
});

t.test('an approval past its expiry does not count', async (t) => {
  const id = await held('PurgeKey', { name: 'other' });
  await h.store.updatePendingRequest(id, 'pending', { state: 'approved' });
  const rec = (await h.store.getPendingRequest(id))!;
  const late = new StoreQuorumGate({
    store: h.store,
    operations: ['PurgeKey'],
    clock: () => rec.expiresAt + 1,
  });
  const v = await late.check('PurgeKey', 'other', DEV_ADMIN_ID, {
    params: {},
    context: { [QUORUM_CONTEXT_KEY]: id },
  });
  t.not(v, 'proceed');
  const onTime = new StoreQuorumGate({
    store: h.store,
    operations: ['PurgeKey'],
    clock: () => rec.expiresAt - 1,
  });
  const ok = await onTime.check('PurgeKey', 'other', DEV_ADMIN_ID, {
    params: {},
    context: { [QUORUM_CONTEXT_KEY]: id },
  });
  t.equal(ok, 'proceed', 'the same approval before expiry proceeds (the test can fail)');
});
