// The README's envelope layout is enough for another implementation: a Python one written
// from it alone (test/interop/envelope.py, python3-cryptography) opens envelopes the server
// made, and makes envelopes the server opens. The KEK is imported (BYOK) with material the
// test keeps, so both sides hold the same key.
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { packImportBlob } from '../../src/keys/import-blob.js';
import { runPython } from '../helpers/python.js';
import { call, startHarness } from './fixtures.js';

const h = await startHarness();
t.teardown(() => h.close());

const material = randomBytes(32);
const ik = await h.keys.createImportKey();
await h.keys.importKey({
  name: 'byok-envelope',
  kind: 'aes-256',
  importKeyId: ik.importKeyId,
  wrapped: packImportBlob(ik.publicKeySpki, material),
});

const python = (req: unknown) => runPython('envelope.py', { input: req });

t.test('an envelope from GenerateDataKey opens in the Python implementation', async (t) => {
  const client = h.client();
  const aad = Buffer.from('tenant=42');
  const g = await call<{ plaintextDek: Buffer; envelope: Buffer; keyVersion: number }>(
    client,
    'GenerateDataKey',
    {
      keyName: 'byok-envelope',
      aad,
    },
  );
  const opened = await python({
    open: { kek: material.toString('hex'), envelope: g.envelope.toString('hex'), aad: aad.toString('hex') },
  });
  t.same(opened, {
    keyName: 'byok-envelope',
    keyVersion: 1,
    ivBytes: 12,
    tagBytes: 16,
    dek: Buffer.from(g.plaintextDek).toString('hex'),
  });
  const wrongAad = await python({
    open: { kek: material.toString('hex'), envelope: g.envelope.toString('hex'), aad: '00' },
  });
  t.equal(wrongAad.error, 'INVALID_TAG', 'the caller AAD is bound in, as documented');
});

t.test('an envelope the Python implementation seals opens with Unwrap', async (t) => {
  const client = h.client();
  const dek = randomBytes(32);
  const aad = Buffer.from('from-python');
  const sealed = await python({
    seal: {
      kek: material.toString('hex'),
      key: 'byok-envelope',
      version: 1,
      dek: dek.toString('hex'),
      aad: aad.toString('hex'),
      iv: randomBytes(12).toString('hex'),
    },
  });
  const envelope = Buffer.from(String(sealed.envelope), 'hex');
  const u = await call<{ plaintextDek: Buffer; keyName: string; keyVersion: number }>(client, 'Unwrap', {
    envelope,
    aad,
  });
  t.same(Buffer.from(u.plaintextDek), dek);
  t.equal(u.keyName, 'byok-envelope');
  t.equal(u.keyVersion, 1);
  // The header is in the AAD: the same bytes claiming another version do not open.
  const other = Buffer.from(envelope);
  other.writeUInt32BE(2, 7 + 'byok-envelope'.length);
  await t.rejects(
    call(client, 'Unwrap', { envelope: other, aad }),
    { code: 5 },
    'version 2 does not exist yet',
  );
  await h.keys.rotateKey('byok-envelope');
  await t.rejects(
    call(client, 'Unwrap', { envelope: other, aad }),
    { code: 3, details: /could not be opened/ },
    'after a rotation version 2 exists, and the bytes made for version 1 fail under it',
  );
  const again = await call<{ plaintextDek: Buffer }>(client, 'Unwrap', { envelope, aad });
  t.same(Buffer.from(again.plaintextDek), dek, 'the version-1 envelope still opens after the rotation');
});
