// Adopt: a key made on the token by other tools (here: the addon directly, as
// pkcs11-tool --keygen would) comes under management by CKA_ID or label, without copying.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { keysFixture, objectsWithId, code } from './helpers.js';

const f = await keysFixture('adopt');
t.teardown(() => f.close());
const { keys, hsm } = f;

const full = { encrypt: true, decrypt: true, wrap: true, unwrap: true };

async function aes(id: Buffer, label: string, extractable = false): Promise<void> {
  await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id, label, token: true, extractable, usage: full },
  });
}

t.test('adopt an AES key by CKA_ID: same object, origin adopted', async (t) => {
  const id = Buffer.from('0102', 'hex');
  await aes(id, 'legacy-kek');
  const dek = randomBytes(32);
  const enc = await hsm.run({ op: 'encrypt', key: { id, cls: 'secret' }, plaintext: dek });
  const v = await keys.adoptKey({ name: 'legacy', kind: 'aes-256', hsmObjectId: id });
  t.equal(v.origin, 'adopted');
  t.equal(v.versions[0]!.hsmObjectId, '0102');
  t.equal(v.versions[0]!.hsmLabel, 'legacy-kek', 'the label is left alone');
  const u = await keys.forUnwrap('legacy', 1, 'unwrapKey');
  const dec = await hsm.run({ op: 'decrypt', key: u.ref, iv: enc.iv, ciphertext: enc.ciphertext });
  t.ok(dec.plaintext.equals(dek), 'data sealed before adoption still opens');
  t.equal(await objectsWithId(hsm, '0102'), 1, 'not copied');
  t.equal(await code(keys.adoptKey({ name: 'legacy-2', kind: 'aes-256', hsmObjectId: id })), 'KEY_EXISTS');
});

t.test('adopt by label, including an object without CKA_ID', async (t) => {
  await aes(Buffer.alloc(0), 'no-id-kek');
  const v = await keys.adoptKey({ name: 'by-label', kind: 'aes-256', hsmLabel: 'no-id-kek' });
  t.equal(v.versions[0]!.hsmObjectId.length, 32, 'a CKA_ID was assigned');
  t.equal((await keys.forWrap('by-label', 'wrapKey')).version, 1);
  t.same(await f.store.listOpenIntents(), []);
});

t.test('adopt an EC pair: SPKI from the public half', async (t) => {
  const id = Buffer.from('ec01', 'hex');
  await hsm.run({
    op: 'generateKeyPair',
    kind: 'ec',
    curve: 'P-256',
    publicSpec: { id, label: 'ec-legacy', usage: { verify: true } },
    privateSpec: { id, label: 'ec-legacy', usage: { sign: true } },
  });
  const v = await keys.adoptKey({ name: 'ec-legacy', kind: 'ec-p256', hsmObjectId: id });
  t.ok(v.versions[0]!.publicKeySpki && v.versions[0]!.publicKeySpki.length > 60);
  t.same(v.operations, ['sign', 'verify']);
  // Purge destroys both halves of an adopted pair.
  await keys.deleteKey('ec-legacy');
  await keys.purgeKey('ec-legacy');
  t.equal(await objectsWithId(hsm, 'ec01'), 0);
});

t.test('refusals', async (t) => {
  await aes(Buffer.from('0a0a', 'hex'), 'exportable', true);
  t.equal(
    await code(keys.adoptKey({ name: 'x1', kind: 'aes-256', hsmObjectId: Buffer.from('0a0a', 'hex') })),
    'INVALID_REQUEST',
  );
  const ok = await keys.adoptKey({
    name: 'x1',
    kind: 'aes-256',
    hsmObjectId: Buffer.from('0a0a', 'hex'),
    allowExtractable: true,
  });
  t.equal(ok.origin, 'adopted', 'allowed with the explicit flag');
  t.equal(
    await code(keys.adoptKey({ name: 'x2', kind: 'rsa-3072', hsmObjectId: Buffer.from('0102', 'hex') })),
    'KEY_NOT_FOUND',
  );
  await hsm.run({
    op: 'generateKeyPair',
    kind: 'ec',
    publicSpec: { id: Buffer.from('0b0b', 'hex'), label: 'ec2', usage: { verify: true } },
    privateSpec: { id: Buffer.from('0b0b', 'hex'), label: 'ec2', usage: { sign: true } },
  });
  t.equal(
    await code(keys.adoptKey({ name: 'x3', kind: 'rsa-3072', hsmObjectId: Buffer.from('0b0b', 'hex') })),
    'KEY_KIND_MISMATCH',
  );
  t.equal(
    await code(keys.adoptKey({ name: 'x4', kind: 'aes-256', hsmObjectId: Buffer.from('ffff', 'hex') })),
    'KEY_NOT_FOUND',
  );
  t.equal(await code(keys.adoptKey({ name: 'x5', kind: 'aes-256' })), 'INVALID_REQUEST');
  t.equal(
    await code(
      keys.adoptKey({ name: 'x6', kind: 'aes-256', hsmLabel: 'a', hsmObjectId: Buffer.from('01', 'hex') }),
    ),
    'INVALID_REQUEST',
  );
  await aes(Buffer.from('0c0c', 'hex'), 'twin');
  await aes(Buffer.from('0d0d', 'hex'), 'twin');
  t.equal(
    await code(keys.adoptKey({ name: 'x7', kind: 'aes-256', hsmLabel: 'twin' })),
    'INVALID_REQUEST',
    'ambiguous label',
  );
  t.equal(await code(keys.adoptKey({ name: 'legacy', kind: 'aes-256', hsmLabel: 'twin' })), 'KEY_EXISTS');
});

t.test('operations limited to what the object permits', async (t) => {
  const id = Buffer.from('0e0e', 'hex');
  await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id, label: 'enc', usage: { encrypt: true, decrypt: true } },
  });
  const v = await keys.adoptKey({ name: 'enc-only', kind: 'aes-256', hsmObjectId: id });
  t.same(v.operations.sort(), ['decrypt', 'encrypt']);
  const id2 = Buffer.from('0f0f', 'hex');
  await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id: id2, label: 'enc2', usage: { encrypt: true, decrypt: true } },
  });
  t.equal(
    await code(
      keys.adoptKey({
        name: 'enc-2',
        kind: 'aes-256',
        hsmObjectId: id2,
        operations: ['wrapKey', 'unwrapKey'],
      }),
    ),
    'INVALID_REQUEST',
  );
});
