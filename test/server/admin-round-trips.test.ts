// Every hyok.admin.v1.KeyAdmin RPC round-trips as the admin identity against a real
// server, SoftHSM2 token, SQLite store, policy file and audit log.
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import t from 'tap';
import { parse } from 'yaml';
import { packImportBlob } from '../../src/keys/index.js';
import { call, reasonOf, settle } from './fixtures.js';
import { ADMIN_TEST_POLICY, adminRecords, errorMetadata, startAdminHarness } from './admin-harness.js';

const h = await startAdminHarness();
t.teardown(() => h.close());
const a = h.admin();

interface Ts {
  seconds: string;
  nanos: number;
}
interface KeyMsg {
  name: string;
  kind: string;
  state: string;
  primaryVersion: number;
  versions: {
    version: number;
    state: string;
    origin: string;
    createdTime: Ts | null;
    publicKeySpki: Buffer;
    hsmObjectId: string;
  }[];
  allowedOperations: string[];
  tags: Record<string, string>;
  retentionDays: number;
  purgeProtection: boolean;
  rotationPolicy: { rotateAfter: Ts | null; nextRotationTime: Ts | null } | null;
  createdTime: Ts | null;
  updatedTime: Ts | null;
  deletedTime: Ts | null;
  scheduledPurgeTime: Ts | null;
}
interface KeyRes {
  key: KeyMsg;
}

const ms = (ts: Ts | null) => (ts ? Number(ts.seconds) * 1000 + Math.round(ts.nanos / 1e6) : null);

t.test(
  'CreateKey: AES with tags, retention and a rotation period; audited with name and version',
  async (t) => {
    const r = await call<KeyRes>(a, 'CreateKey', {
      requestId: 'create-k1',
      name: 'k1',
      kind: 'AES_256',
      tags: { team: 'a', env: 'dev' },
      retentionDays: 7,
      rotationPolicy: { rotateAfter: { seconds: String(30 * 86400), nanos: 0 } },
    });
    const k = r.key;
    t.equal(k.name, 'k1');
    t.equal(k.kind, 'AES_256');
    t.equal(k.state, 'ENABLED');
    t.equal(k.primaryVersion, 1);
    t.equal(k.versions.length, 1);
    t.equal(k.versions[0]!.origin, 'GENERATED');
    t.match(k.versions[0]!.hsmObjectId, /^[0-9a-f]+$/);
    t.equal(k.versions[0]!.publicKeySpki.length, 0, 'AES has no public key');
    t.same([...k.allowedOperations].sort(), ['DECRYPT', 'ENCRYPT', 'UNWRAP_KEY', 'WRAP_KEY']);
    t.same(k.tags, { team: 'a', env: 'dev' });
    t.equal(k.retentionDays, 7);
    t.equal(k.purgeProtection, false);
    t.equal(k.rotationPolicy?.rotateAfter?.seconds, String(30 * 86400));
    const next = ms(k.rotationPolicy?.nextRotationTime ?? null)!;
    t.ok(
      Math.abs(next - (ms(k.versions[0]!.createdTime)! + 30 * 86_400_000)) < 2,
      'next rotation = created + 30 days',
    );
    t.equal(k.deletedTime, null);
    const rec = adminRecords(await h.auditTail(), 'CreateKey').find((x) => x.requestId === 'create-k1');
    t.ok(rec, 'audited');
    t.same(rec?.key, { name: 'k1', version: 1 });
    t.same(rec?.decision, { allowed: true, rule: 'binding[1]:all' });
    t.same(rec?.result, { code: 'OK' });
    t.equal((rec?.identity as { san: string }).san, 'spiffe://hyokd.dev/admin');
  },
);

t.test('CreateKey: an RSA-3072 pair with chosen operations publishes its public key', async (t) => {
  const r = await call<KeyRes>(a, 'CreateKey', {
    name: 'rsa1',
    kind: 'RSA_3072',
    allowedOperations: ['SIGN'],
  });
  t.equal(r.key.kind, 'RSA_3072');
  t.same(r.key.allowedOperations, ['SIGN']);
  t.ok(r.key.versions[0]!.publicKeySpki.length > 384, 'SPKI DER of a 3072-bit key');
});

t.test('ListKeys: all, paged, by tag, with and without deleted keys', async (t) => {
  const all = await call<{ keys: KeyMsg[]; nextPageToken: string }>(a, 'ListKeys', {});
  t.same(
    all.keys.map((k) => k.name),
    ['demo', 'k1', 'rsa1'],
  );
  t.equal(all.nextPageToken, '');
  const p1 = await call<{ keys: KeyMsg[]; nextPageToken: string }>(a, 'ListKeys', { pageSize: 2 });
  t.same(
    p1.keys.map((k) => k.name),
    ['demo', 'k1'],
  );
  t.not(p1.nextPageToken, '');
  const p2 = await call<{ keys: KeyMsg[]; nextPageToken: string }>(a, 'ListKeys', {
    pageSize: 2,
    pageToken: p1.nextPageToken,
  });
  t.same(
    p2.keys.map((k) => k.name),
    ['rsa1'],
  );
  t.equal(p2.nextPageToken, '');
  const byTag = await call<{ keys: KeyMsg[] }>(a, 'ListKeys', { tagFilter: { team: 'a' } });
  t.same(
    byTag.keys.map((k) => k.name),
    ['k1'],
  );
});

t.test('GetKey returns the full metadata', async (t) => {
  const r = await call<KeyRes>(a, 'GetKey', { name: 'k1' });
  t.equal(r.key.name, 'k1');
  t.same(r.key.tags, { team: 'a', env: 'dev' });
});

t.test('RotateKey makes a new primary version; audited with the new version', async (t) => {
  const r = await call<KeyRes & { newVersion: number }>(a, 'RotateKey', { name: 'k1', requestId: 'rot-k1' });
  t.equal(r.newVersion, 2);
  t.equal(r.key.primaryVersion, 2);
  t.same(
    r.key.versions.map((v) => v.version),
    [1, 2],
  );
  const rec = adminRecords(await h.auditTail(), 'RotateKey').find((x) => x.requestId === 'rot-k1');
  t.same(rec?.key, { name: 'k1', version: 2 });
});

t.test('SetKeyState: one version, then the whole key, off and on', async (t) => {
  let r = await call<KeyRes>(a, 'SetKeyState', { name: 'k1', enabled: false, version: 1 });
  t.same(
    r.key.versions.map((v) => v.state),
    ['VERSION_DISABLED', 'VERSION_ENABLED'],
  );
  t.equal(r.key.state, 'ENABLED', 'only the version changed');
  r = await call<KeyRes>(a, 'SetKeyState', { name: 'k1', enabled: true, version: 1 });
  t.equal(r.key.versions[0]!.state, 'VERSION_ENABLED');
  r = await call<KeyRes>(a, 'SetKeyState', { name: 'k1', enabled: false });
  t.equal(r.key.state, 'DISABLED');
  t.same(
    r.key.versions.map((v) => v.state),
    ['VERSION_ENABLED', 'VERSION_ENABLED'],
    'versions untouched by a key-level change',
  );
  r = await call<KeyRes>(a, 'SetKeyState', { name: 'k1', enabled: true });
  t.equal(r.key.state, 'ENABLED');
  const [e] = await settle(call(a, 'SetKeyState', { name: 'k1', enabled: false, version: 2 }));
  t.equal(e?.code, 3, 'the primary version cannot be disabled on its own');
});

t.test('SetRotationPolicy sets and clears the period, keeping an expiry set elsewhere', async (t) => {
  await h.keys.setRotationPolicy('k1', { rotationPeriodDays: 30, expiresAt: 4_102_444_800_000 });
  let r = await call<KeyRes>(a, 'SetRotationPolicy', {
    name: 'k1',
    rotationPolicy: { rotateAfter: { seconds: String(7 * 86400) } },
  });
  t.equal(r.key.rotationPolicy?.rotateAfter?.seconds, String(7 * 86400));
  t.not(r.key.rotationPolicy?.nextRotationTime, null);
  t.equal((await h.keys.describe('k1')).rotation.expiresAt, 4_102_444_800_000, 'expiry kept');
  r = await call<KeyRes>(a, 'SetRotationPolicy', { name: 'k1' });
  t.equal(r.key.rotationPolicy?.rotateAfter, null);
  t.equal(r.key.rotationPolicy?.nextRotationTime, null);
  t.same((await h.keys.describe('k1')).rotation, { expiresAt: 4_102_444_800_000 });
});

t.test('SetTags merges, removes and replaces', async (t) => {
  let r = await call<KeyRes>(a, 'SetTags', { name: 'k1', tags: { owner: 'ops' }, remove: ['env'] });
  t.same(r.key.tags, { team: 'a', owner: 'ops' });
  r = await call<KeyRes>(a, 'SetTags', { name: 'k1', tags: { only: 'this' }, replace: true });
  t.same(r.key.tags, { only: 'this' });
});

t.test('DeleteKey, RecoverKey, PurgeKey', async (t) => {
  let r = await call<KeyRes>(a, 'DeleteKey', { name: 'k1' });
  t.equal(r.key.state, 'DELETED');
  const del = ms(r.key.deletedTime)!;
  t.ok(del > 0);
  t.equal(ms(r.key.scheduledPurgeTime)! - del, 7 * 86_400_000, 'purge date = deletion + retention');
  const listed = await call<{ keys: KeyMsg[] }>(a, 'ListKeys', {});
  t.notOk(
    listed.keys.some((k) => k.name === 'k1'),
    'hidden from the default list',
  );
  const withDeleted = await call<{ keys: KeyMsg[] }>(a, 'ListKeys', { includeDeleted: true });
  t.ok(withDeleted.keys.some((k) => k.name === 'k1' && k.state === 'DELETED'));
  r = await call<KeyRes>(a, 'RecoverKey', { name: 'k1' });
  t.equal(r.key.state, 'ENABLED');
  t.equal(r.key.deletedTime, null);
  await call(a, 'DeleteKey', { name: 'k1' });
  const versions = (await h.keys.describe('k1')).versions.map((v) => v.hsmObjectId);
  const p = await call<{ name: string; purgedTime: Ts }>(a, 'PurgeKey', {
    name: 'k1',
    requestId: 'purge-k1',
  });
  t.equal(p.name, 'k1');
  t.ok(Math.abs(ms(p.purgedTime)! - Date.now()) < 60_000);
  const [e] = await settle(call(a, 'GetKey', { name: 'k1' }));
  t.equal(e?.code, 5);
  t.equal(reasonOf(e), 'KEY_NOT_FOUND');
  for (const id of versions) {
    const found = await h.hsm.run({ op: 'find', cls: 'secret', id: Buffer.from(id, 'hex') });
    t.equal(found.handles.length, 0, `HSM object ${id} destroyed`);
  }
  const rec = adminRecords(await h.auditTail(), 'PurgeKey').find((x) => x.requestId === 'purge-k1');
  t.same(rec?.key, { name: 'k1' });
  t.same(rec?.result, { code: 'OK' });
});

t.test('AdoptKey by label and by CKA_ID takes over token objects without copying', async (t) => {
  const id = randomBytes(8);
  await h.hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: {
      id,
      label: 'owner-made',
      token: true,
      extractable: false,
      usage: { encrypt: true, decrypt: true, wrap: true, unwrap: true },
    },
  });
  const byLabel = await call<KeyRes>(a, 'AdoptKey', {
    name: 'adopted1',
    kind: 'AES_256',
    hsmLabel: 'owner-made',
    allowedOperations: ['WRAP_KEY', 'UNWRAP_KEY'],
  });
  t.equal(byLabel.key.versions[0]!.origin, 'ADOPTED');
  t.equal(byLabel.key.versions[0]!.hsmObjectId, id.toString('hex'), 'the same object');
  const id2 = randomBytes(8);
  await h.hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: {
      id: id2,
      label: 'owner-made-2',
      token: true,
      extractable: false,
      usage: { encrypt: true, decrypt: true, wrap: true, unwrap: true },
    },
  });
  const byId = await call<KeyRes>(a, 'AdoptKey', {
    name: 'adopted2',
    kind: 'AES_256',
    hsmObjectId: id2,
    allowedOperations: ['WRAP_KEY', 'UNWRAP_KEY'],
  });
  t.equal(byId.key.versions[0]!.hsmObjectId, id2.toString('hex'));
  // An extractable object is refused unless allow_extractable says it is intended (and
  // then the audit record says so).
  const id3 = randomBytes(8);
  await h.hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: {
      id: id3,
      label: 'owner-made-3',
      token: true,
      extractable: true,
      usage: { encrypt: true, decrypt: true, wrap: true, unwrap: true },
    },
  });
  const adopt3 = (extra: Record<string, unknown>) =>
    call<KeyRes>(a, 'AdoptKey', { name: 'adopted3', kind: 'AES_256', hsmObjectId: id3, ...extra });
  const [refused] = await settle(adopt3({}));
  t.equal(refused?.code, 3, 'INVALID_ARGUMENT');
  t.match(String(refused?.details), /extractable/);
  const ok3 = await adopt3({ allowExtractable: true, requestId: 'adopt-extractable' });
  t.equal(ok3.key.versions[0]!.hsmObjectId, id3.toString('hex'));
  const rec = adminRecords(await h.auditTail(), 'AdoptKey').find((r) => r.requestId === 'adopt-extractable');
  t.match(rec?.details, { allowExtractable: true });
  // The adopted key works on the data plane.
  const c = h.hyok();
  const dek = randomBytes(32);
  const w = await call<{ envelope: Buffer }>(c, 'Wrap', { keyName: 'adopted2', plaintextDek: dek });
  const u = await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: w.envelope });
  t.same(u.plaintextDek, dek);
});

t.test('BackupKey and RestoreKey within the security domain', async (t) => {
  const { domainId } = (await call<{ domain: { domainId: string } }>(a, 'InitSecurityDomain', {})).domain;
  await call(a, 'CreateKey', { name: 'bk', kind: 'AES_256', backupable: true });
  const c = h.hyok();
  const dek = randomBytes(32);
  const w = await call<{ envelope: Buffer }>(c, 'Wrap', { keyName: 'bk', plaintextDek: dek });
  const b = await call<{ backup: Buffer; securityDomain: string }>(a, 'BackupKey', {
    name: 'bk',
    requestId: 'backup-bk',
  });
  t.equal(b.securityDomain, domainId);
  t.ok(b.backup.length > 32);
  await call(a, 'DeleteKey', { name: 'bk' });
  await call(a, 'PurgeKey', { name: 'bk' });
  const r = await call<KeyRes>(a, 'RestoreKey', { backup: b.backup, requestId: 'restore-bk' });
  t.equal(r.key.name, 'bk');
  t.equal(r.key.versions[0]!.origin, 'RESTORED');
  const u = await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: w.envelope });
  t.same(u.plaintextDek, dek, 'an envelope made before the backup unwraps after the restore');
  const recs = await h.auditTail();
  const br = adminRecords(recs, 'BackupKey').find((x) => x.requestId === 'backup-bk');
  t.match((br?.details as { backup: string }).backup, /^[0-9a-f]{16}$/, 'the blob is audited as a digest');
  const rr = adminRecords(recs, 'RestoreKey').find((x) => x.requestId === 'restore-bk');
  t.same(rr?.key, { name: 'bk', version: 1 }, 'the restore is audited with the restored name');
  await call(a, 'RotateKey', { name: 'bk' });
  const [e] = await settle(call(a, 'RestoreKey', { backup: b.backup }));
  t.equal(e?.code, 9, 'restoring an older backup over the live key: FAILED_PRECONDITION');
  t.equal(reasonOf(e), 'DOWNGRADE');
});

t.test('CreateImportKey then ImportKey with a packImportBlob blob (new key, then new version)', async (t) => {
  const ik = await call<{
    importKeyId: string;
    publicKeySpki: Buffer;
    supportedAlgorithms: string[];
    expireTime: Ts;
  }>(a, 'CreateImportKey', {});
  t.match(ik.importKeyId, /^[0-9a-f]{32}$/);
  t.ok(ik.supportedAlgorithms.includes('RSA_AES_KEY_WRAP_SHA1'));
  t.ok(ms(ik.expireTime)! > Date.now());
  const material = randomBytes(32);
  const r = await call<KeyRes & { version: number }>(a, 'ImportKey', {
    name: 'byok1',
    kind: 'AES_256',
    importKeyId: ik.importKeyId,
    wrappedKeyMaterial: packImportBlob(ik.publicKeySpki, material),
    allowedOperations: ['WRAP_KEY', 'UNWRAP_KEY'],
    requestId: 'import-1',
  });
  t.equal(r.version, 1);
  t.equal(r.key.versions[0]!.origin, 'IMPORTED');
  const c = h.hyok();
  const dek = randomBytes(32);
  const w = await call<{ envelope: Buffer }>(c, 'Wrap', { keyName: 'byok1', plaintextDek: dek });
  t.same((await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: w.envelope })).plaintextDek, dek);
  const v2 = await call<KeyRes & { version: number }>(a, 'ImportKey', {
    name: 'byok1',
    kind: 'AES_256',
    importKeyId: ik.importKeyId,
    wrappedKeyMaterial: packImportBlob(ik.publicKeySpki, randomBytes(32)),
    newVersion: true,
  });
  t.equal(v2.version, 2);
  t.equal(v2.key.primaryVersion, 2);
  const rec = adminRecords(await h.auditTail(), 'ImportKey').find((x) => x.requestId === 'import-1');
  t.same(rec?.key, { name: 'byok1', version: 1 });
  t.match((rec?.details as { wrapped: string }).wrapped, /^[0-9a-f]{16}$/);
});

t.test('GetPolicy shows the file in force with an etag', async (t) => {
  const r = await call<{
    policy: { document: string; etag: string; updatedTime: Ts | null; updatedBy: string };
  }>(a, 'GetPolicy', {});
  t.equal(r.policy.document, readFileSync(h.policyFile, 'utf8'));
  t.same(parse(r.policy.document), ADMIN_TEST_POLICY);
  t.match(r.policy.etag, /^[0-9a-f]{16}$/);
  t.equal(r.policy.updatedBy, '', 'never set through the API');
});

t.test('SetPolicy: file rewritten 0600, revision stored, holder swapped, reload audited', async (t) => {
  const before = await call<{ policy: { etag: string } }>(a, 'GetPolicy', {});
  const gen = h.policy.generation;
  const doc = `${readFileSync(h.policyFile, 'utf8')}keys:\n  - key: other\n    grants:\n      - identity: spiffe://hyokd.dev/x\n        permissions: [wrapKey]\n`;
  const r = await call<{ policy: { document: string; etag: string; updatedBy: string; updatedTime: Ts } }>(
    a,
    'SetPolicy',
    { document: doc, etag: before.policy.etag, requestId: 'set-policy-1' },
  );
  t.equal(r.policy.document, doc);
  t.not(r.policy.etag, before.policy.etag);
  t.equal(r.policy.updatedBy, 'spiffe://hyokd.dev/admin');
  t.equal(readFileSync(h.policyFile, 'utf8'), doc, 'the file holds the new document');
  t.equal(statSync(h.policyFile).mode & 0o777, 0o600);
  t.equal(h.policy.generation, gen + 1, 'the holder swapped');
  t.equal(
    h.policy.decide({ identity: 'spiffe://hyokd.dev/x', permission: 'wrapKey', keyName: 'other' }).allowed,
    true,
  );
  const stored = await h.store.getCurrentPolicyDocument();
  t.equal(stored?.text, doc);
  t.equal(stored?.createdBy, 'spiffe://hyokd.dev/admin');
  // A SIGHUP-style reload re-reads the file and keeps the new policy.
  const rl = await h.policy.reload();
  t.equal(rl.ok, true);
  t.equal(
    h.policy.decide({ identity: 'spiffe://hyokd.dev/x', permission: 'wrapKey', keyName: 'other' }).allowed,
    true,
  );
  const after = await call<{ policy: { document: string; etag: string } }>(a, 'GetPolicy', {});
  t.equal(after.policy.etag, r.policy.etag);
  const recs = await h.auditTail();
  const reload = recs.filter((x) => x.type === 'reload' && x.what === 'policy' && x.ok === true);
  t.equal(reload.length, 1, 'one policy reload event');
  t.equal((reload[0]?.details as { by: string }).by, 'spiffe://hyokd.dev/admin');
  t.ok(adminRecords(recs, 'SetPolicy').some((x) => x.requestId === 'set-policy-1'));

  const [stale] = await settle(call(a, 'SetPolicy', { document: doc, etag: before.policy.etag }));
  t.equal(stale?.code, 10, 'a stale etag: ABORTED');
  t.equal(reasonOf(stale), 'ETAG_MISMATCH');
});

t.test('SetPolicy refuses a bad policy with its problems and keeps the old one', async (t) => {
  const gen = h.policy.generation;
  const fileBefore = readFileSync(h.policyFile, 'utf8');
  const [e] = await settle(
    call(a, 'SetPolicy', {
      document: 'version: 1\nbindings:\n  - identity: "x"\n    roles: [nope]\nroles:\n  r: [fly]\n',
      requestId: 'bad-policy',
    }),
  );
  t.equal(e?.code, 3);
  t.equal(reasonOf(e), 'POLICY_INVALID');
  const md = errorMetadata(e);
  const problems = JSON.parse(md.problems ?? '[]') as string[];
  t.ok(problems.length >= 1, 'problems listed');
  t.match(problems.join('\n'), /fly/);
  t.equal(md.problemCount, String(problems.length));
  t.equal(h.policy.generation, gen, 'holder not swapped');
  t.equal(readFileSync(h.policyFile, 'utf8'), fileBefore, 'file untouched');
  const [y] = await settle(call(a, 'SetPolicy', { document: 'version: [1' }));
  t.equal(reasonOf(y), 'POLICY_INVALID', 'YAML syntax errors too');
  const failed = (await h.auditTail()).filter((x) => x.type === 'reload' && x.ok === false);
  t.ok(failed.length >= 2, 'refused documents are audited as failed reloads');
});

t.test('GetPolicy follows a SIGHUP-style reload of an edited file', async (t) => {
  const { writeFileSync } = await import('node:fs');
  const before = await call<{ policy: { etag: string } }>(a, 'GetPolicy', {});
  const edited = `${readFileSync(h.policyFile, 'utf8')}# edited by hand\n`;
  writeFileSync(h.policyFile, edited);
  const notYet = await call<{ policy: { document: string; etag: string } }>(a, 'GetPolicy', {});
  t.equal(notYet.policy.etag, before.policy.etag, 'an edit is not in force until reloaded');
  t.equal((await h.policy.reload()).ok, true);
  const r = await call<{ policy: { document: string; etag: string; updatedBy: string } }>(a, 'GetPolicy', {});
  t.equal(r.policy.document, edited);
  t.not(r.policy.etag, before.policy.etag);
  t.equal(r.policy.updatedBy, '', 'not a stored revision');
  const [stale] = await settle(call(a, 'SetPolicy', { document: edited, etag: before.policy.etag }));
  t.equal(reasonOf(stale), 'ETAG_MISMATCH', 'the old etag is stale after the reload');
});

t.test('ExplainPolicy says who decides, with a trace, for the caller or another identity', async (t) => {
  const r = await call<{
    allowed: boolean;
    decidedBy: string;
    explanation: string;
    quorumRequired: boolean;
    trace: { rule: string; matched: boolean }[];
  }>(a, 'ExplainPolicy', { identity: 'spiffe://hyokd.dev/client', operation: 'unwrapKey', keyName: 'demo' });
  t.equal(r.allowed, true);
  t.equal(r.decidedBy, 'binding[0]:crypto-user');
  t.ok(r.trace.some((s) => s.rule === 'binding[0]:crypto-user' && s.matched));
  t.equal(r.quorumRequired, false);
  const d = await call<{ allowed: boolean; decidedBy: string }>(a, 'ExplainPolicy', {
    identity: 'spiffe://hyokd.dev/client',
    operation: 'purge',
    keyName: 'demo',
  });
  t.equal(d.allowed, false);
  t.equal(d.decidedBy, 'default-deny');
  const self = await call<{ allowed: boolean; decidedBy: string }>(a, 'ExplainPolicy', {
    operation: 'purge',
  });
  t.equal(self.allowed, true, 'empty identity: the caller (admin)');
  t.equal(self.decidedBy, 'binding[1]:all');
});

t.test('metrics observer saw the admin service', async (t) => {
  t.ok(
    h.calls.some(
      (c) => c.service === 'hyok.admin.v1.KeyAdmin' && c.method === 'CreateKey' && c.status === 'OK',
    ),
  );
  t.ok(h.calls.some((c) => c.service === 'hyok.admin.v1.KeyAdmin' && c.identityClass === 'admin'));
});

interface ReflectionResponse {
  listServicesResponse: { service: { name: string }[] };
  fileDescriptorResponse: { fileDescriptorProto: Buffer[] };
}

t.test('server reflection lists both services and resolves the admin types', async (t) => {
  const { join } = await import('node:path');
  const { loadSync } = await import('@grpc/proto-loader');
  const grpc = await import('@grpc/grpc-js');
  const descriptor = (await import('protobufjs/ext/descriptor/index.js')).default as unknown as {
    FileDescriptorProto: { decode(b: Uint8Array): { name: string; messageType?: { name: string }[] } };
  };
  const pkg = loadSync(
    join(process.cwd(), 'node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto'),
    { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true },
  );
  const Ctor = (
    grpc.loadPackageDefinition(pkg) as unknown as {
      grpc: {
        reflection: { v1: { ServerReflection: new (...a: unknown[]) => import('@grpc/grpc-js').Client } };
      };
    }
  ).grpc.reflection.v1.ServerReflection;
  const client = new Ctor(
    `127.0.0.1:${h.server.port}`,
    grpc.credentials.createSsl(
      Buffer.from(h.ca.certPem),
      Buffer.from(h.adminCert.keyPem),
      Buffer.from(h.adminCert.certPem),
    ),
  );
  t.teardown(() => client.close());
  const ask = (req: Record<string, unknown>) =>
    new Promise<ReflectionResponse>((resolve, reject) => {
      const s = (
        client as unknown as {
          serverReflectionInfo(): import('@grpc/grpc-js').ClientDuplexStream<unknown, ReflectionResponse>;
        }
      ).serverReflectionInfo();
      s.on('data', (d) => {
        resolve(d);
        s.end();
      });
      s.on('error', reject);
      s.write(req);
    });
  const list = await ask({ listServices: '' });
  const names = list.listServicesResponse.service.map((s) => s.name);
  t.ok(names.includes('hyok.v1.Hyok'));
  t.ok(names.includes('hyok.admin.v1.KeyAdmin'));
  const files = await ask({ fileContainingSymbol: 'hyok.admin.v1.KeyAdmin' });
  const decoded = files.fileDescriptorResponse.fileDescriptorProto.map((b) =>
    descriptor.FileDescriptorProto.decode(b),
  );
  const types = decoded.flatMap((f) => (f.messageType ?? []).map((m) => m.name));
  t.ok(types.includes('CreateKeyRequest'));
  t.ok(types.includes('Duration'), 'the Duration dependency resolves');
});
