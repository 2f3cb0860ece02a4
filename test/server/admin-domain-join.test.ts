// JoinSecurityDomain: a daemon whose store is bound to no domain joins one whose backup
// key is already on its HSM (made here by a first member's KeyService on the same token,
// as an HSM cluster would replicate it); a CKA_ID not on the token is refused; afterwards
// blobs move between the two members.
import { join } from 'node:path';
import t from 'tap';
import { KeyService } from '../../src/keys/index.js';
import { openSqliteStore } from '../../src/store/index.js';
import { call, reasonOf, settle } from './fixtures.js';
import { adminRecords, startAdminHarness } from './admin-harness.js';

interface Domain {
  domainId: string;
  backupKeyId: string;
}

const h = await startAdminHarness({ keys: [] });
t.teardown(() => h.close());
const a = h.admin();
const first = openSqliteStore({ path: join(h.dir, 'first-member.db') });
t.teardown(() => first.close());
const firstKeys = new KeyService({ hsm: h.hsm, store: first });
const d = await firstKeys.initDomain();

t.test('JoinSecurityDomain binds another store to the domain; blobs move between them', async (t) => {
  const [missing] = await settle(
    call(a, 'JoinSecurityDomain', { domainId: d.domainId, backupKeyId: 'ab'.repeat(16) }),
  );
  t.equal(missing?.code, 5);
  t.equal(reasonOf(missing), 'KEY_NOT_FOUND', 'the backup key must be on this HSM');
  t.equal(await h.store.getDomain(), null, 'nothing bound');

  const j = await call<{ domain: Domain }>(a, 'JoinSecurityDomain', {
    domainId: d.domainId,
    backupKeyId: d.backupKeyId,
    requestId: 'join-1',
  });
  t.equal(j.domain.domainId, d.domainId);
  t.equal(j.domain.backupKeyId, d.backupKeyId);
  t.equal((await h.store.getDomain())?.domainId, d.domainId, 'the store is bound');
  const g = await call<{ domain: Domain }>(a, 'GetSecurityDomain', {});
  t.same(g.domain, j.domain);
  const init = await call<{ domain: Domain; created: boolean }>(a, 'InitSecurityDomain', {});
  t.equal(init.created, false, 'init after join returns the joined domain');
  t.equal(init.domain.domainId, d.domainId);

  await call(a, 'CreateKey', { name: 'shared', kind: 'AES_256', backupable: true });
  const b = await call<{ backup: Buffer; securityDomain: string }>(a, 'BackupKey', { name: 'shared' });
  t.equal(b.securityDomain, d.domainId);
  const r = await firstKeys.restoreKey(b.backup);
  t.equal(r.origin, 'restored', 'a blob from the joined store restores into the first member');
  const rec = adminRecords(await h.auditTail(), 'JoinSecurityDomain').find((x) => x.requestId === 'join-1');
  t.match(rec?.details, { securityDomain: d.domainId, backupKeyId: d.backupKeyId });
});
