// BYOK from the key owner's side in another language: key material wrapped by a Python
// packer written from the README and admin.proto (test/interop/byok_pack.py,
// python3-cryptography), with hyokd's header and as a bare CKM_RSA_AES_KEY_WRAP payload
// (what other tools produce), imports into the HSM; the owner's copy of the material then
// opens what the HSM encrypts.
import { createDecipheriv, randomBytes } from 'node:crypto';
import t from 'tap';
import { runPython } from '../helpers/python.js';
import { keysFixture } from './helpers.js';

const f = await keysFixture('byok-interop');
t.teardown(() => f.close());
const { keys, hsm } = f;

/** The Python packer's blob. */
async function pack(spki: Buffer, material: Buffer, header: boolean): Promise<Buffer> {
  const out = await runPython<{ blob: string }>('byok_pack.py', {
    input: { spki: spki.toString('hex'), material: material.toString('hex'), header },
  });
  return Buffer.from(out.blob, 'hex');
}

/** The HSM really holds `material` under `name`: its ciphertext opens with the owner's copy. */
async function holds(name: string, material: Buffer): Promise<boolean> {
  const u = await keys.forWrap(name, 'wrapKey');
  const enc = await hsm.run({ op: 'encrypt', key: u.ref, plaintext: Buffer.from('owner-check') });
  const d = createDecipheriv('aes-256-gcm', material, enc.iv);
  d.setAuthTag(enc.ciphertext.subarray(-16));
  return Buffer.concat([d.update(enc.ciphertext.subarray(0, -16)), d.final()]).toString() === 'owner-check';
}

t.test('a blob with hyokd’s header, packed in Python, imports', async (t) => {
  const ik = await keys.createImportKey();
  const material = randomBytes(32);
  const blob = await pack(ik.publicKeySpki, material, true);
  const r = await keys.importKey({
    name: 'py-header',
    kind: 'aes-256',
    importKeyId: ik.importKeyId,
    wrapped: blob,
  });
  t.equal(r.key.origin, 'imported');
  t.ok(await holds('py-header', material));
});

t.test('a bare CKM_RSA_AES_KEY_WRAP payload imports when the algorithm is named', async (t) => {
  const ik = await keys.createImportKey();
  const material = randomBytes(32);
  const blob = await pack(ik.publicKeySpki, material, false);
  await t.rejects(
    keys.importKey({ name: 'py-bare', kind: 'aes-256', importKeyId: ik.importKeyId, wrapped: blob }),
    /wrapAlgorithm is required/,
    'without a header the algorithm must be named',
  );
  await keys.importKey({
    name: 'py-bare',
    kind: 'aes-256',
    importKeyId: ik.importKeyId,
    wrapped: blob,
    wrapAlgorithm: 'RSA_AES_KEY_WRAP_SHA1',
  });
  t.ok(await holds('py-bare', material));
});

t.test('a Python blob for another import key is refused', async (t) => {
  const mine = await keys.createImportKey();
  const other = await keys.createImportKey();
  const blob = await pack(other.publicKeySpki, randomBytes(32), true);
  await t.rejects(
    keys.importKey({ name: 'py-wrong', kind: 'aes-256', importKeyId: mine.importKeyId, wrapped: blob }),
    { code: 'IMPORT_BLOB_INVALID' },
  );
});
