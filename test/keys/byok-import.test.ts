// BYOK: an import key on the token, key material packed with node:crypto, unwrapped in
// the HSM as a sensitive key; tampered blobs and blobs for another import key refused.
import t from 'tap';
import { createCipheriv, generateKeyPairSync, randomBytes } from 'node:crypto';
import { packImportBlob, parseImportBlob } from '../../src/keys/import-blob.js';
import { keysFixture, code } from './helpers.js';

const f = await keysFixture('byok');
t.teardown(() => f.close());
const { keys, hsm } = f;

const ik = await keys.createImportKey();

t.test('the import key is an unwrap-only token RSA-3072 key with an expiry', async (t) => {
  t.match(ik.importKeyId, /^[0-9a-f]{32}$/);
  t.equal(ik.expiresAt, f.clock.now + 24 * 3600_000);
  t.ok(ik.supportedAlgorithms.includes('RSA_AES_KEY_WRAP_SHA1'));
  t.notOk(ik.supportedAlgorithms.includes('RSA_AES_KEY_WRAP_SHA256'), 'SoftHSM2 has no SHA-256 OAEP');
  const { handles } = await hsm.run({ op: 'find', cls: 'private', id: Buffer.from(ik.importKeyId, 'hex') });
  t.equal(handles.length, 1);
  const a = (await hsm.run({ op: 'getAttributes', handle: handles[0]! })).attrs;
  t.equal(a.modulus?.length, 384);
  t.equal(a.extractable, false);
  t.same(
    Object.entries(a.usage)
      .filter(([, v]) => v)
      .map(([k]) => k),
    ['unwrap'],
  );
});

t.test('packImportBlob: header and bad input', async (t) => {
  const blob = packImportBlob(ik.publicKeySpki, randomBytes(32));
  const p = parseImportBlob(blob)!;
  t.equal(p.hash, 'sha1');
  t.equal(p.payload.length, 384 + 40);
  t.equal(parseImportBlob(Buffer.from('not a blob')), null);
  t.throws(() => parseImportBlob(Buffer.concat([blob.subarray(0, 7), Buffer.from([9]), blob.subarray(8)])));
  t.throws(() => packImportBlob(ik.publicKeySpki, Buffer.alloc(0)));
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
    type: 'spki',
    format: 'der',
  });
  t.throws(() => packImportBlob(ec, randomBytes(32)));
});

t.test('imported AES material wraps what the owner can unwrap with their copy', async (t) => {
  const material = randomBytes(32);
  const blob = packImportBlob(ik.publicKeySpki, material, { hash: 'sha1' });
  const r = await keys.importKey({
    name: 'byok-1',
    kind: 'aes-256',
    importKeyId: ik.importKeyId,
    wrapped: blob,
  });
  t.equal(r.version, 1);
  t.equal(r.key.origin, 'imported');
  const u = await keys.forWrap('byok-1', 'wrapKey');
  const enc = await hsm.run({ op: 'encrypt', key: u.ref, plaintext: Buffer.from('dek-dek-dek') });
  // The owner decrypts with the material they kept: the HSM really holds that key.
  const { createDecipheriv } = await import('node:crypto');
  const d = createDecipheriv('aes-256-gcm', material, enc.iv);
  d.setAuthTag(enc.ciphertext.subarray(-16));
  const pt = Buffer.concat([d.update(enc.ciphertext.subarray(0, -16)), d.final()]);
  t.equal(pt.toString(), 'dek-dek-dek');
  const { handles } = await hsm.run({ op: 'find', cls: 'secret', id: u.ref.id });
  const a = (await hsm.run({ op: 'getAttributes', handle: handles[0]! })).attrs;
  t.equal(a.sensitive, true);
  t.equal(a.extractable, false);
  // And the same material the other way: an AES-GCM ciphertext made outside opens inside.
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', material, iv);
  const ct = Buffer.concat([c.update(Buffer.from('outside')), c.final(), c.getAuthTag()]);
  const back = await hsm.run({ op: 'decrypt', key: u.ref, iv, ciphertext: ct });
  t.equal(back.plaintext.toString(), 'outside');
});

t.test('import as a new version of an existing key', async (t) => {
  await keys.createKey({ name: 'byok-2', kind: 'aes-256' });
  const blob = packImportBlob(ik.publicKeySpki, randomBytes(32));
  const r = await keys.importKey({
    name: 'byok-2',
    kind: 'aes-256',
    importKeyId: ik.importKeyId,
    wrapped: blob,
    newVersion: true,
  });
  t.equal(r.version, 2);
  t.equal(r.key.primaryVersion, 2);
  t.equal(
    await code(
      keys.importKey({
        name: 'byok-2',
        kind: 'rsa-3072',
        importKeyId: ik.importKeyId,
        wrapped: blob,
        newVersion: true,
      }),
    ),
    'KEY_KIND_MISMATCH',
  );
  t.equal(
    await code(
      keys.importKey({ name: 'byok-2', kind: 'aes-256', importKeyId: ik.importKeyId, wrapped: blob }),
    ),
    'KEY_EXISTS',
  );
});

t.test('RSA private key material imports with its public key', async (t) => {
  const pair = generateKeyPairSync('rsa', { modulusLength: 3072 });
  const pkcs8 = pair.privateKey.export({ type: 'pkcs8', format: 'der' });
  const blob = packImportBlob(ik.publicKeySpki, pkcs8);
  const r = await keys.importKey({
    name: 'byok-rsa',
    kind: 'rsa-3072',
    importKeyId: ik.importKeyId,
    wrapped: blob,
  });
  const want = pair.publicKey.export({ type: 'spki', format: 'der' });
  t.ok(r.key.versions[0]!.publicKeySpki?.equals(want));
  const u = await keys.forWrap('byok-rsa', 'decrypt');
  t.equal(u.publicRef, undefined, 'no public object for imported pairs');
});

t.test('tampered blobs, other import keys, expired import keys are refused', async (t) => {
  const before = (await f.store.listKeys()).length;
  const blob = packImportBlob(ik.publicKeySpki, randomBytes(32));
  const tampered = Buffer.from(blob);
  tampered[tampered.length - 3]! ^= 0x01;
  t.equal(
    await code(
      keys.importKey({ name: 'bad-1', kind: 'aes-256', importKeyId: ik.importKeyId, wrapped: tampered }),
    ),
    'IMPORT_BLOB_INVALID',
  );
  const rsaTampered = Buffer.from(blob);
  rsaTampered[40]! ^= 0x80;
  t.equal(
    await code(
      keys.importKey({ name: 'bad-2', kind: 'aes-256', importKeyId: ik.importKeyId, wrapped: rsaTampered }),
    ),
    'IMPORT_BLOB_INVALID',
  );
  const other = await keys.createImportKey();
  // Header says another exchange key:
  t.equal(
    await code(
      keys.importKey({ name: 'bad-3', kind: 'aes-256', importKeyId: other.importKeyId, wrapped: blob }),
    ),
    'IMPORT_BLOB_INVALID',
  );
  // No header: the HSM itself fails to unwrap with the wrong exchange key.
  t.equal(
    await code(
      keys.importKey({
        name: 'bad-4',
        kind: 'aes-256',
        importKeyId: other.importKeyId,
        wrapped: parseImportBlob(blob)!.payload,
        wrapAlgorithm: 'RSA_AES_KEY_WRAP_SHA1',
      }),
    ),
    'IMPORT_BLOB_INVALID',
  );
  t.equal(
    await code(
      keys.importKey({
        name: 'bad-5',
        kind: 'aes-256',
        importKeyId: ik.importKeyId,
        wrapped: parseImportBlob(blob)!.payload,
      }),
    ),
    'INVALID_REQUEST',
    'a raw blob needs its algorithm named',
  );
  t.equal(
    await code(
      keys.importKey({
        name: 'bad-6',
        kind: 'aes-256',
        importKeyId: ik.importKeyId,
        wrapped: blob,
        wrapAlgorithm: 'RSA_AES_KEY_WRAP_SHA256',
      }),
    ),
    'IMPORT_BLOB_INVALID',
    'header and named algorithm disagree',
  );
  const sha256 = packImportBlob(ik.publicKeySpki, randomBytes(32), { hash: 'sha256' });
  t.equal(
    await code(
      keys.importKey({ name: 'bad-7', kind: 'aes-256', importKeyId: ik.importKeyId, wrapped: sha256 }),
    ),
    'UNSUPPORTED',
  );
  const short = packImportBlob(ik.publicKeySpki, randomBytes(16));
  t.equal(
    await code(
      keys.importKey({ name: 'bad-8', kind: 'aes-256', importKeyId: ik.importKeyId, wrapped: short }),
    ),
    'KEY_KIND_MISMATCH',
  );
  t.equal(
    await code(
      keys.importKey({ name: 'bad-9', kind: 'aes-256', importKeyId: 'ff'.repeat(16), wrapped: blob }),
    ),
    'IMPORT_KEY_EXPIRED',
  );
  t.equal(
    await code(keys.importKey({ name: 'bad-10', kind: 'aes-256', importKeyId: 'zz', wrapped: blob })),
    'IMPORT_KEY_EXPIRED',
  );
  t.equal((await f.store.listKeys()).length, before, 'nothing half-imported');
  t.same(await f.store.listOpenIntents(), []);
  // Expiry: the import key stops working and the scheduler destroys it.
  f.clock.now += 25 * 3600_000;
  t.equal(
    await code(
      keys.importKey({ name: 'bad-11', kind: 'aes-256', importKeyId: ik.importKeyId, wrapped: blob }),
    ),
    'IMPORT_KEY_EXPIRED',
  );
  t.equal(await keys.expireImportKeys(), 4, 'two import keys, both halves each');
  const { handles } = await hsm.run({ op: 'find', cls: 'private', label: 'hyokd:import-key' });
  t.equal(handles.length, 0);
});
