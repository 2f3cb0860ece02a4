// Malformed, oversized and unknown input to every KeyAdmin RPC, as the admin: each gets
// the registry error it should (INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION …),
// is audited with that code, and changes nothing.
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { packImportBlob } from '../../src/keys/index.js';
import { call, reasonOf, settle } from './fixtures.js';
import { adminRecords, startAdminHarness } from './admin-harness.js';

const h = await startAdminHarness({ keys: ['demo', 'gone'] });
t.teardown(() => h.close());
const a = h.admin();

await h.keys.deleteKey('gone');
await h.keys.initDomain();
await h.keys.createKey({ name: 'bk', kind: 'aes-256', backupable: true });
const backup = (await h.keys.backupKey('bk')).backup;
const ik = await h.keys.createImportKey();

const LONG_NAME = 'k'.repeat(129);
const DAY = 86_400;

type Case = [label: string, method: string, req: Record<string, unknown>, grpc: number, reason: string];

const CASES: Case[] = [
  // CreateKey
  ['CreateKey: empty name', 'CreateKey', { name: '', kind: 'AES_256' }, 3, 'KEY_NAME_INVALID'],
  ['CreateKey: 129-char name', 'CreateKey', { name: LONG_NAME, kind: 'AES_256' }, 3, 'KEY_NAME_INVALID'],
  ['CreateKey: bad characters', 'CreateKey', { name: 'a b/c', kind: 'AES_256' }, 3, 'KEY_NAME_INVALID'],
  ['CreateKey: kind unspecified', 'CreateKey', { name: 'n1' }, 3, 'INVALID_REQUEST'],
  [
    'CreateKey: SIGN on AES',
    'CreateKey',
    { name: 'n1', kind: 'AES_256', allowedOperations: ['SIGN'] },
    3,
    'INVALID_REQUEST',
  ],
  [
    'CreateKey: retention 3 days',
    'CreateKey',
    { name: 'n1', kind: 'AES_256', retentionDays: 3 },
    3,
    'RETENTION_RANGE',
  ],
  [
    'CreateKey: retention 91 days',
    'CreateKey',
    { name: 'n1', kind: 'AES_256', retentionDays: 91 },
    3,
    'RETENTION_RANGE',
  ],
  [
    'CreateKey: rotation of a day and a half',
    'CreateKey',
    { name: 'n1', kind: 'AES_256', rotationPolicy: { rotateAfter: { seconds: String(1.5 * DAY) } } },
    3,
    'INVALID_REQUEST',
  ],
  [
    'CreateKey: rotation with nanos',
    'CreateKey',
    { name: 'n1', kind: 'AES_256', rotationPolicy: { rotateAfter: { seconds: String(DAY), nanos: 5 } } },
    3,
    'INVALID_REQUEST',
  ],
  [
    'CreateKey: 65 tags',
    'CreateKey',
    {
      name: 'n1',
      kind: 'AES_256',
      tags: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`t${i}`, 'v'])),
    },
    3,
    'INVALID_REQUEST',
  ],
  [
    'CreateKey: tag value too long',
    'CreateKey',
    { name: 'n1', kind: 'AES_256', tags: { a: 'x'.repeat(257) } },
    3,
    'INVALID_REQUEST',
  ],
  ['CreateKey: name taken', 'CreateKey', { name: 'demo', kind: 'AES_256' }, 6, 'KEY_EXISTS'],
  [
    'CreateKey: name taken by a soft-deleted key',
    'CreateKey',
    { name: 'gone', kind: 'AES_256' },
    6,
    'KEY_EXISTS',
  ],
  // ListKeys
  ['ListKeys: garbage page token', 'ListKeys', { pageToken: '!!!' }, 3, 'INVALID_REQUEST'],
  ['ListKeys: oversized page token', 'ListKeys', { pageToken: 'a'.repeat(600) }, 3, 'INVALID_REQUEST'],
  // GetKey
  ['GetKey: unknown', 'GetKey', { name: 'nope' }, 5, 'KEY_NOT_FOUND'],
  ['GetKey: bad name', 'GetKey', { name: LONG_NAME }, 3, 'KEY_NAME_INVALID'],
  // RotateKey
  ['RotateKey: unknown', 'RotateKey', { name: 'nope' }, 5, 'KEY_NOT_FOUND'],
  ['RotateKey: soft-deleted', 'RotateKey', { name: 'gone' }, 9, 'KEY_DELETED'],
  // SetKeyState
  ['SetKeyState: unknown key', 'SetKeyState', { name: 'nope', enabled: false }, 5, 'KEY_NOT_FOUND'],
  [
    'SetKeyState: unknown version',
    'SetKeyState',
    { name: 'demo', enabled: false, version: 99 },
    5,
    'VERSION_NOT_FOUND',
  ],
  [
    'SetKeyState: version 0',
    'SetKeyState',
    { name: 'demo', enabled: false, version: 0 },
    3,
    'INVALID_REQUEST',
  ],
  ['SetKeyState: soft-deleted', 'SetKeyState', { name: 'gone', enabled: true }, 9, 'KEY_DELETED'],
  // DeleteKey / RecoverKey / PurgeKey
  ['DeleteKey: unknown', 'DeleteKey', { name: 'nope' }, 5, 'KEY_NOT_FOUND'],
  ['DeleteKey: already deleted', 'DeleteKey', { name: 'gone' }, 9, 'KEY_DELETED'],
  ['RecoverKey: not deleted', 'RecoverKey', { name: 'demo' }, 9, 'KEY_NOT_DELETED'],
  ['RecoverKey: unknown', 'RecoverKey', { name: 'nope' }, 5, 'KEY_NOT_FOUND'],
  ['PurgeKey: not deleted', 'PurgeKey', { name: 'demo' }, 9, 'KEY_NOT_DELETED'],
  ['PurgeKey: unknown', 'PurgeKey', { name: 'nope' }, 5, 'KEY_NOT_FOUND'],
  // AdoptKey
  ['AdoptKey: no selector', 'AdoptKey', { name: 'ad', kind: 'AES_256' }, 3, 'INVALID_REQUEST'],
  ['AdoptKey: empty label', 'AdoptKey', { name: 'ad', kind: 'AES_256', hsmLabel: '' }, 3, 'INVALID_REQUEST'],
  [
    'AdoptKey: oversized id',
    'AdoptKey',
    { name: 'ad', kind: 'AES_256', hsmObjectId: randomBytes(129) },
    3,
    'INVALID_REQUEST',
  ],
  [
    'AdoptKey: no such object',
    'AdoptKey',
    { name: 'ad', kind: 'AES_256', hsmLabel: 'not-on-token' },
    5,
    'KEY_NOT_FOUND',
  ],
  ['AdoptKey: kind unspecified', 'AdoptKey', { name: 'ad', hsmLabel: 'x' }, 3, 'INVALID_REQUEST'],
  // BackupKey / RestoreKey
  ['BackupKey: unknown', 'BackupKey', { name: 'nope' }, 5, 'KEY_NOT_FOUND'],
  ['BackupKey: not backupable', 'BackupKey', { name: 'demo' }, 9, 'OPERATION_NOT_ALLOWED'],
  ['RestoreKey: empty', 'RestoreKey', {}, 3, 'INVALID_REQUEST'],
  ['RestoreKey: garbage', 'RestoreKey', { backup: randomBytes(300) }, 3, 'IMPORT_BLOB_INVALID'],
  [
    'RestoreKey: over 1 MiB',
    'RestoreKey',
    { backup: Buffer.alloc(1024 * 1024 + 1, 0x41) },
    3,
    'INVALID_REQUEST',
  ],
  // CreateImportKey / ImportKey
  ['CreateImportKey: AES kind', 'CreateImportKey', { kind: 'AES_256' }, 3, 'INVALID_REQUEST'],
  [
    'ImportKey: no import key id',
    'ImportKey',
    { name: 'imp', kind: 'AES_256', wrappedKeyMaterial: randomBytes(64) },
    3,
    'INVALID_REQUEST',
  ],
  [
    'ImportKey: no material',
    'ImportKey',
    { name: 'imp', kind: 'AES_256', importKeyId: ik.importKeyId },
    3,
    'INVALID_REQUEST',
  ],
  [
    'ImportKey: headerless material without an algorithm',
    'ImportKey',
    { name: 'imp', kind: 'AES_256', importKeyId: ik.importKeyId, wrappedKeyMaterial: randomBytes(424) },
    3,
    'INVALID_REQUEST',
  ],
  [
    'ImportKey: garbage material',
    'ImportKey',
    {
      name: 'imp',
      kind: 'AES_256',
      importKeyId: ik.importKeyId,
      wrappedKeyMaterial: randomBytes(424),
      wrapAlgorithm: 'RSA_AES_KEY_WRAP_SHA1',
    },
    3,
    'IMPORT_BLOB_INVALID',
  ],
  [
    'ImportKey: unknown wrap algorithm number',
    'ImportKey',
    {
      name: 'imp',
      kind: 'AES_256',
      importKeyId: ik.importKeyId,
      wrappedKeyMaterial: randomBytes(64),
      wrapAlgorithm: 9,
    },
    3,
    'INVALID_REQUEST',
  ],
  [
    'ImportKey: an import key that does not exist',
    'ImportKey',
    {
      name: 'imp',
      kind: 'AES_256',
      importKeyId: 'ffffffffffffffff0000000000000000',
      wrappedKeyMaterial: packImportBlob(ik.publicKeySpki, randomBytes(32)),
    },
    9,
    'IMPORT_KEY_EXPIRED',
  ],
  // SetRotationPolicy / SetTags
  [
    'SetRotationPolicy: fraction of a day',
    'SetRotationPolicy',
    { name: 'demo', rotationPolicy: { rotateAfter: { seconds: '100' } } },
    3,
    'INVALID_REQUEST',
  ],
  [
    'SetRotationPolicy: over 10 years',
    'SetRotationPolicy',
    { name: 'demo', rotationPolicy: { rotateAfter: { seconds: String(3651 * DAY) } } },
    3,
    'INVALID_REQUEST',
  ],
  ['SetRotationPolicy: unknown', 'SetRotationPolicy', { name: 'nope' }, 5, 'KEY_NOT_FOUND'],
  ['SetTags: unknown', 'SetTags', { name: 'nope', tags: { a: 'b' } }, 5, 'KEY_NOT_FOUND'],
  [
    'SetTags: remove 65 names',
    'SetTags',
    { name: 'demo', remove: Array.from({ length: 65 }, (_, i) => `t${i}`) },
    3,
    'INVALID_REQUEST',
  ],
  ['SetTags: empty tag name', 'SetTags', { name: 'demo', tags: { '': 'v' } }, 3, 'INVALID_REQUEST'],
  // Policy
  ['GetPolicy: request id with a space', 'GetPolicy', { requestId: 'a b' }, 3, 'INVALID_REQUEST'],
  ['SetPolicy: empty document', 'SetPolicy', { document: '' }, 3, 'INVALID_REQUEST'],
  [
    'SetPolicy: over 256 KiB',
    'SetPolicy',
    { document: `# ${'x'.repeat(256 * 1024)}\nversion: 1\n` },
    3,
    'INVALID_REQUEST',
  ],
  ['SetPolicy: unknown field', 'SetPolicy', { document: 'version: 1\nextra: true\n' }, 3, 'POLICY_INVALID'],
  [
    'SetPolicy: oversized etag',
    'SetPolicy',
    { document: 'version: 1\n', etag: 'e'.repeat(200) },
    3,
    'INVALID_REQUEST',
  ],
  ['ExplainPolicy: unknown operation', 'ExplainPolicy', { operation: 'fly' }, 3, 'INVALID_REQUEST'],
  [
    'ExplainPolicy: bad key name',
    'ExplainPolicy',
    { operation: 'get', keyName: 'a b' },
    3,
    'KEY_NAME_INVALID',
  ],
  [
    'ExplainPolicy: identity too long',
    'ExplainPolicy',
    { operation: 'get', identity: 'x'.repeat(1025) },
    3,
    'INVALID_REQUEST',
  ],
  // Common fields
  [
    'context with too many entries',
    'GetKey',
    { name: 'demo', context: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`c${i}`, 'v'])) },
    3,
    'INVALID_REQUEST',
  ],
  ['context value too long', 'ListKeys', { context: { reason: 'r'.repeat(513) } }, 3, 'INVALID_REQUEST'],
];

t.test('each bad request gets its error and is audited with that code', async (t) => {
  const keysBefore = await h.keys.listKeys({ includeDeleted: true });
  const revisionsBefore = await h.store.getCurrentPolicyDocument();
  let i = 0;
  for (const [label, method, req, grpc, reason] of CASES) {
    const requestId = `bad-${i++}`;
    const withId = method === 'GetPolicy' ? req : { requestId, ...req };
    const [e] = await settle(call(a, method, withId));
    t.equal(e?.code, grpc, `${label}: gRPC ${grpc} (${e?.details ?? 'no error'})`);
    t.equal(reasonOf(e), reason, `${label}: ${reason}`);
  }
  const recs = await h.auditTail(1000);
  i = 0;
  for (const [label, method, req, , reason] of CASES) {
    const requestId = `bad-${i++}`;
    if (method === 'GetPolicy') continue;
    const rec = adminRecords(recs, method).find((r) => r.requestId === requestId);
    t.same(rec?.result, { code: reason }, `${label}: audited`);
    void req;
  }
  const after = await h.keys.listKeys({ includeDeleted: true });
  t.same(
    after.keys.map((k) => [k.name, k.state, k.versions.length, k.tags]),
    keysBefore.keys.map((k) => [k.name, k.state, k.versions.length, k.tags]),
    'no key changed',
  );
  t.same(await h.store.getCurrentPolicyDocument(), revisionsBefore, 'no policy revision stored');
});

t.test('a tampered import blob and a blob for another import key are refused', async (t) => {
  const blob = packImportBlob(ik.publicKeySpki, randomBytes(32));
  blob[blob.length - 5]! ^= 0x01;
  const [e] = await settle(
    call(a, 'ImportKey', {
      name: 'imp',
      kind: 'AES_256',
      importKeyId: ik.importKeyId,
      wrappedKeyMaterial: blob,
    }),
  );
  t.equal(reasonOf(e), 'IMPORT_BLOB_INVALID');
  const other = await h.keys.createImportKey();
  const [e2] = await settle(
    call(a, 'ImportKey', {
      name: 'imp',
      kind: 'AES_256',
      importKeyId: ik.importKeyId,
      wrappedKeyMaterial: packImportBlob(other.publicKeySpki, randomBytes(32)),
    }),
  );
  t.equal(e2?.code, 3);
  t.equal(reasonOf(e2), 'IMPORT_BLOB_INVALID');
  const [g] = await settle(call(a, 'GetKey', { name: 'imp' }));
  t.equal(reasonOf(g), 'KEY_NOT_FOUND', 'no key was created');
});

t.test('a tampered backup is refused', async (t) => {
  const doc = JSON.parse(backup.toString('utf8')) as Record<string, unknown>;
  const sealed = Buffer.from(String(doc.sealed), 'base64');
  sealed[0]! ^= 0xff;
  doc.sealed = sealed.toString('base64');
  await h.keys.deleteKey('bk');
  await h.keys.purgeKey('bk');
  const [e] = await settle(call(a, 'RestoreKey', { backup: Buffer.from(JSON.stringify(doc)) }));
  t.equal(e?.code, 3);
  t.equal(reasonOf(e), 'IMPORT_BLOB_INVALID');
  const [g] = await settle(call(a, 'GetKey', { name: 'bk' }));
  t.equal(reasonOf(g), 'KEY_NOT_FOUND');
});
