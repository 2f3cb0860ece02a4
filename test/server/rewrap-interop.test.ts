// Rewrap as a caller in another language sees it: a recipient written in Python from
// hyok.proto's RewrapAlgorithm comments (test/interop/rewrap_recipient.py,
// python3-cryptography) recovers the DEK from GenerateDataKey's and Unwrap's rewrapped
// answers, for both schemes.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import t from 'tap';
import { runPython } from '../helpers/python.js';
import { call, startHarness } from './fixtures.js';

const h = await startHarness();
t.teardown(() => h.close());

interface Rewrapped {
  algorithm: string;
  wrappedDek: Buffer;
  ephemeralPublicKey: Buffer;
}

/** The Python recipient's DEK (hex) from a rewrapped answer. */
async function recipient(algorithm: string, privateKey: KeyObject, r: Rewrapped): Promise<string> {
  const out = await runPython<{ dek: string }>('rewrap_recipient.py', {
    input: {
      algorithm,
      privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }),
      wrappedDek: Buffer.from(r.wrappedDek).toString('hex'),
      ephemeralPublicKey: Buffer.from(r.ephemeralPublicKey).toString('hex'),
    },
  });
  return out.dek;
}

const schemes: Array<[string, () => { publicKey: KeyObject; privateKey: KeyObject }]> = [
  ['RSA_OAEP_SHA256', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
  ['ECDH_P256_HKDF_SHA256_AES_KWP', () => generateKeyPairSync('ec', { namedCurve: 'P-256' })],
];

for (const [algorithm, makeKeys] of schemes) {
  t.test(`${algorithm}: the Python recipient recovers the DEK`, async (t) => {
    const client = h.client();
    const { publicKey, privateKey } = makeKeys();
    const rewrap = { algorithm, recipientPublicKey: publicKey.export({ type: 'spki', format: 'der' }) };
    const aad = Buffer.from('rewrap-interop');
    const g = await call<{ plaintextDek: Buffer; envelope: Buffer; rewrapped: Rewrapped }>(
      client,
      'GenerateDataKey',
      { keyName: 'demo', aad, rewrap },
    );
    t.equal(g.plaintextDek.length, 0, 'no DEK in clear');
    t.equal(g.rewrapped.algorithm, algorithm);
    // The DEK in clear, to compare: the same envelope unwrapped without a rewrap.
    const plain = await call<{ plaintextDek: Buffer }>(client, 'Unwrap', { envelope: g.envelope, aad });
    const dek = Buffer.from(plain.plaintextDek).toString('hex');
    t.equal(await recipient(algorithm, privateKey, g.rewrapped), dek, 'from GenerateDataKey');
    const u = await call<{ plaintextDek: Buffer; rewrapped: Rewrapped }>(client, 'Unwrap', {
      envelope: g.envelope,
      aad,
      rewrap,
    });
    t.equal(u.plaintextDek.length, 0);
    t.equal(await recipient(algorithm, privateKey, u.rewrapped), dek, 'from Unwrap');
  });
}
