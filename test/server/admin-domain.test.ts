// Security domain and backupable keys over the wire: InitSecurityDomain creates the
// domain backup key (sensitive, never extractable) and binds the store once;
// GetSecurityDomain shows it; a key made with CreateKey{backupable} is extractable and
// backs up and restores over the wire, a default key is not and is refused.
// Key-less `restore` decides; key-scoped admins and the data-plane identity are refused.
// JoinSecurityDomain's success path is in admin-domain-join.test.ts (its own token).
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { DOMAIN_KEY_LABEL } from '../../src/keys/index.js';
import { call, reasonOf, settle } from './fixtures.js';
import { adminRecords, errorMetadata, startAdminHarness } from './admin-harness.js';

interface Domain {
  domainId: string;
  backupKeyId: string;
  boundTime: { seconds: string } | null;
}
interface KeyRes {
  key: { name: string; versions: { origin: string }[] };
}

const h = await startAdminHarness({ keys: ['demo'] });
t.teardown(() => h.close());
const a = h.admin();

async function attrsOf(id: Buffer) {
  const { handles } = await h.hsm.run({ op: 'find', cls: 'secret', id });
  if (handles.length !== 1) throw new Error(`expected one object, found ${handles.length}`);
  return (await h.hsm.run({ op: 'getAttributes', handle: handles[0]! })).attrs;
}

t.test('GetSecurityDomain before any domain: unset', async (t) => {
  const g = await call<{ domain: Domain | null }>(a, 'GetSecurityDomain', {});
  t.equal(g.domain, null);
  const [e] = await settle(call(a, 'BackupKey', { name: 'demo' }));
  t.equal(e?.code, 9, 'FAILED_PRECONDITION');
  t.equal(reasonOf(e), 'DOMAIN_NOT_BOUND', 'no backup without a domain');
});

let domain: Domain;

t.test('InitSecurityDomain creates the domain once; later calls return it unchanged', async (t) => {
  const r = await call<{ domain: Domain; created: boolean }>(a, 'InitSecurityDomain', {
    requestId: 'init-1',
  });
  t.equal(r.created, true);
  t.match(r.domain.domainId, /^[0-9a-f-]{36}$/);
  t.match(r.domain.backupKeyId, /^(?:[0-9a-f]{2})+$/);
  t.ok(Number(r.domain.boundTime?.seconds) > 0, 'bound time set');
  domain = r.domain;
  t.equal((await h.store.getDomain())?.domainId, domain.domainId, 'the store is bound');
  const attrs = await attrsOf(Buffer.from(domain.backupKeyId, 'hex'));
  t.equal(attrs.label, DOMAIN_KEY_LABEL);
  t.equal(attrs.token, true);
  t.equal(attrs.sensitive, true);
  t.equal(attrs.extractable, false, 'the domain backup key never leaves the HSM');

  const again = await call<{ domain: Domain; created: boolean }>(a, 'InitSecurityDomain', {});
  t.equal(again.created, false, 'idempotent');
  t.same(again.domain, domain, 'the same domain');
  const { handles } = await h.hsm.run({ op: 'find', cls: 'secret', label: DOMAIN_KEY_LABEL });
  t.equal(handles.length, 1, 'no second backup key was made');
  const g = await call<{ domain: Domain }>(a, 'GetSecurityDomain', {});
  t.same(g.domain, domain);

  const recs = adminRecords(await h.auditTail(), 'InitSecurityDomain');
  const rec = recs.find((r) => r.requestId === 'init-1');
  t.same(rec?.decision, { allowed: true, rule: 'binding[1]:all' });
  t.match(rec?.details, { securityDomain: domain.domainId, created: true });
});

t.test('JoinSecurityDomain on a bound store is refused and changes nothing', async (t) => {
  const [e] = await settle(
    call(a, 'JoinSecurityDomain', { domainId: 'another-domain', backupKeyId: domain.backupKeyId }),
  );
  t.equal(e?.code, 9, 'FAILED_PRECONDITION');
  t.equal(reasonOf(e), 'DOMAIN_BOUND');
  t.equal((await h.store.getDomain())?.domainId, domain.domainId);
});

t.test('CreateKey backupable: extractable, backs up and restores over the wire', async (t) => {
  const r = await call<KeyRes & { key: { versions: { hsmObjectId: string }[] } }>(a, 'CreateKey', {
    name: 'bk',
    kind: 'AES_256',
    backupable: true,
    requestId: 'create-bk',
  });
  const attrs = await attrsOf(Buffer.from(r.key.versions[0]!.hsmObjectId, 'hex'));
  t.equal(attrs.extractable, true, 'CKA_EXTRACTABLE=true');
  t.equal(attrs.sensitive, true, 'still sensitive');
  const created = adminRecords(await h.auditTail(), 'CreateKey').find((x) => x.requestId === 'create-bk');
  t.match(created?.details, { backupable: true }, 'the choice is audited');

  const c = h.hyok();
  const dek = randomBytes(32);
  const w = await call<{ envelope: Buffer }>(c, 'Wrap', { keyName: 'bk', plaintextDek: dek });
  const b = await call<{ backup: Buffer; securityDomain: string }>(a, 'BackupKey', { name: 'bk' });
  t.equal(b.securityDomain, domain.domainId);
  await call(a, 'DeleteKey', { name: 'bk' });
  await call(a, 'PurgeKey', { name: 'bk' });
  const restored = await call<KeyRes>(a, 'RestoreKey', { backup: b.backup });
  t.equal(restored.key.versions[0]!.origin, 'RESTORED');
  const u = await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: w.envelope });
  t.same(u.plaintextDek, dek, 'the restored key unwraps what the original wrapped');
});

t.test('a default key is not extractable and BackupKey refuses it', async (t) => {
  const r = await call<KeyRes & { key: { versions: { hsmObjectId: string }[] } }>(a, 'CreateKey', {
    name: 'plain',
    kind: 'AES_256',
  });
  const attrs = await attrsOf(Buffer.from(r.key.versions[0]!.hsmObjectId, 'hex'));
  t.equal(attrs.extractable, false);
  const [e] = await settle(call(a, 'BackupKey', { name: 'plain' }));
  t.equal(e?.code, 9, 'FAILED_PRECONDITION');
  t.equal(reasonOf(e), 'OPERATION_NOT_ALLOWED');
  t.equal(errorMetadata(e).reason, 'not-backupable');
  const explicit = await call<KeyRes & { key: { versions: { hsmObjectId: string }[] } }>(a, 'CreateKey', {
    name: 'plain-2',
    kind: 'AES_256',
    backupable: false,
  });
  t.equal((await attrsOf(Buffer.from(explicit.key.versions[0]!.hsmObjectId, 'hex'))).extractable, false);
});

t.test('domain RPCs need key-less restore (list to read); bad input is refused', async (t) => {
  const client = h.admin(h.clientCert);
  const scoped = h.admin(h.scopedCert);
  for (const cl of [client, scoped]) {
    for (const [method, req] of [
      ['InitSecurityDomain', {}],
      ['JoinSecurityDomain', { domainId: 'x', backupKeyId: 'ab' }],
      ['GetSecurityDomain', {}],
    ] as const) {
      const [e] = await settle(call(cl, method, req));
      t.equal(e?.code, 7, `${method}: PERMISSION_DENIED`);
    }
  }
  for (const [req, why] of [
    [{ domainId: '', backupKeyId: 'ab' }, 'empty domain id'],
    [{ domainId: 'a b', backupKeyId: 'ab' }, 'space in domain id'],
    [{ domainId: 'd'.repeat(129), backupKeyId: 'ab' }, '129-character domain id'],
    [{ domainId: 'd', backupKeyId: '' }, 'empty backup key id'],
    [{ domainId: 'd', backupKeyId: 'AB' }, 'upper-case hex'],
    [{ domainId: 'd', backupKeyId: 'abc' }, 'odd hex'],
    [{ domainId: 'd', backupKeyId: 'ab'.repeat(65) }, '65-byte id'],
  ] as const) {
    const [e] = await settle(call(a, 'JoinSecurityDomain', req));
    t.equal(e?.code, 3, why);
    t.equal(reasonOf(e), 'INVALID_REQUEST', why);
  }
  t.equal((await h.store.getDomain())?.domainId, domain.domainId, 'still the same domain');
});
