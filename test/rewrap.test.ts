import { createCipheriv, generateKeyPairSync, randomBytes } from 'node:crypto';
import t from 'tap';
import { HyokError } from '../src/errors.js';
import { REWRAP_HKDF_INFO, parseRecipientKey, rewrapDek, unwrapRewrapped } from '../src/rewrap.js';

const spki = (k: { export(o: { format: 'der'; type: 'spki' }): Buffer }): Buffer =>
  k.export({ format: 'der', type: 'spki' });
const rsa2048 = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ecP256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

function code(f: () => unknown): string {
  try {
    f();
    return 'no error';
  } catch (e) {
    return e instanceof HyokError ? e.code : `non-HyokError ${String(e)}`;
  }
}

t.test('RFC 5649 key wrap with padding: node cipher and IV convention (RFC 5649 §6 vector)', async (t) => {
  const kek = Buffer.from('5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8', 'hex');
  const c = createCipheriv('id-aes192-wrap-pad', kek, Buffer.from('a65959a6', 'hex'));
  const out = Buffer.concat([c.update(Buffer.from('466f7250617369', 'hex')), c.final()]);
  t.equal(out.toString('hex'), 'afbeb0f07dfbf5419200f2ccb50bb24f');
});

t.test('RSA-OAEP-SHA256 round trip', async (t) => {
  for (const len of [16, 24, 32]) {
    const dek = randomBytes(len);
    const r = rewrapDek(dek, { algorithm: 'RSA_OAEP_SHA256', recipientPublicKey: spki(rsa2048.publicKey) });
    t.equal(r.algorithm, 'RSA_OAEP_SHA256');
    t.equal(r.wrappedDek.length, 256, 'one modulus-sized block');
    t.equal(r.ephemeralPublicKey.length, 0);
    t.same(unwrapRewrapped(rsa2048.privateKey, r), dek);
    const pem = rsa2048.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    t.same(unwrapRewrapped(pem, r), dek, 'PEM private key');
    const der = rsa2048.privateKey.export({ format: 'der', type: 'pkcs8' });
    t.same(unwrapRewrapped(der, r), dek, 'PKCS#8 DER private key');
  }
  const r = rewrapDek(randomBytes(32), {
    algorithm: 'RSA_OAEP_SHA256',
    recipientPublicKey: spki(rsa2048.publicKey),
  });
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
  t.equal(
    code(() => unwrapRewrapped(other.privateKey, r)),
    'INVALID_CIPHERTEXT',
    'wrong private key',
  );
  const flipped = { ...r, wrappedDek: Buffer.from(r.wrappedDek) };
  flipped.wrappedDek[10]! ^= 1;
  t.equal(
    code(() => unwrapRewrapped(rsa2048.privateKey, flipped)),
    'INVALID_CIPHERTEXT',
    'bit flip',
  );
});

t.test('ECDH P-256 + HKDF-SHA256 + AES-KWP round trip', async (t) => {
  const seen = new Set<string>();
  for (const len of [16, 24, 32]) {
    const dek = randomBytes(len);
    const r = rewrapDek(dek, {
      algorithm: 'ECDH_P256_HKDF_SHA256_AES_KWP',
      recipientPublicKey: spki(ecP256.publicKey),
    });
    t.equal(r.algorithm, 'ECDH_P256_HKDF_SHA256_AES_KWP');
    t.equal(r.wrappedDek.length, 8 + Math.ceil(len / 8) * 8, 'RFC 5649 output length');
    t.equal(r.ephemeralPublicKey.length, 91, 'P-256 SPKI DER, uncompressed point');
    seen.add(r.ephemeralPublicKey.toString('hex'));
    t.same(unwrapRewrapped(ecP256.privateKey, r), dek);
  }
  t.equal(seen.size, 3, 'a fresh ephemeral key every call');
  t.equal(
    REWRAP_HKDF_INFO.toString(),
    'hyokd rewrap v1 ECDH-P256 HKDF-SHA256 A256KWP',
    'the documented info string',
  );

  const dek = randomBytes(32);
  const r = rewrapDek(dek, {
    algorithm: 'ECDH_P256_HKDF_SHA256_AES_KWP',
    recipientPublicKey: spki(ecP256.publicKey),
  });
  const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  t.equal(
    code(() => unwrapRewrapped(other.privateKey, r)),
    'INVALID_CIPHERTEXT',
    'wrong private key',
  );
  const flipped = { ...r, wrappedDek: Buffer.from(r.wrappedDek) };
  flipped.wrappedDek[5]! ^= 0x80;
  t.equal(
    code(() => unwrapRewrapped(ecP256.privateKey, flipped)),
    'INVALID_CIPHERTEXT',
    'bit flip',
  );
  const swapped = { ...r, ephemeralPublicKey: spki(other.publicKey) };
  t.equal(
    code(() => unwrapRewrapped(ecP256.privateKey, swapped)),
    'INVALID_CIPHERTEXT',
    'other ephemeral key',
  );
  t.equal(
    code(() => unwrapRewrapped(ecP256.privateKey, { ...r, ephemeralPublicKey: Buffer.from('junk') })),
    'REWRAP_KEY_INVALID',
    'junk ephemeral key',
  );
  t.equal(
    code(() => unwrapRewrapped(ecP256.privateKey, { ...r, algorithm: 'NOPE' })),
    'REWRAP_ALGORITHM',
  );
});

t.test('bad recipient keys', async (t) => {
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
  const ed = generateKeyPairSync('ed25519');
  const pss = generateKeyPairSync('rsa-pss', { modulusLength: 2048 });
  const rsaE65537 = spki(rsa2048.publicKey);
  const cases: [string, string, Uint8Array, string][] = [
    ['unspecified algorithm', 'REWRAP_ALGORITHM_UNSPECIFIED', rsaE65537, 'REWRAP_ALGORITHM'],
    ['made-up algorithm', 'AES_GCM', rsaE65537, 'REWRAP_ALGORITHM'],
    ['empty key', 'RSA_OAEP_SHA256', Buffer.alloc(0), 'REWRAP_KEY_INVALID'],
    ['garbage key', 'RSA_OAEP_SHA256', randomBytes(300), 'REWRAP_KEY_INVALID'],
    ['truncated SPKI', 'RSA_OAEP_SHA256', rsaE65537.subarray(0, rsaE65537.length - 1), 'REWRAP_KEY_INVALID'],
    ['oversized input', 'RSA_OAEP_SHA256', Buffer.alloc(5000), 'REWRAP_KEY_INVALID'],
    [
      'PEM instead of DER',
      'RSA_OAEP_SHA256',
      Buffer.from(rsa2048.publicKey.export({ format: 'pem', type: 'spki' })),
      'REWRAP_KEY_INVALID',
    ],
    [
      'private key DER',
      'RSA_OAEP_SHA256',
      rsa2048.privateKey.export({ format: 'der', type: 'pkcs8' }),
      'REWRAP_KEY_INVALID',
    ],
    ['RSA 1024', 'RSA_OAEP_SHA256', spki(rsa1024.publicKey), 'REWRAP_KEY_SIZE'],
    ['EC key for RSA', 'RSA_OAEP_SHA256', spki(ecP256.publicKey), 'REWRAP_KEY_TYPE'],
    ['RSA-PSS key for RSA-OAEP', 'RSA_OAEP_SHA256', spki(pss.publicKey), 'REWRAP_KEY_TYPE'],
    ['RSA key for ECDH', 'ECDH_P256_HKDF_SHA256_AES_KWP', rsaE65537, 'REWRAP_KEY_TYPE'],
    ['P-384 for ECDH', 'ECDH_P256_HKDF_SHA256_AES_KWP', spki(p384.publicKey), 'REWRAP_KEY_TYPE'],
    ['Ed25519 for ECDH', 'ECDH_P256_HKDF_SHA256_AES_KWP', spki(ed.publicKey), 'REWRAP_KEY_TYPE'],
  ];
  for (const [name, algorithm, key, want] of cases) {
    t.equal(
      code(() => parseRecipientKey({ algorithm, recipientPublicKey: key })),
      want,
      name,
    );
    t.equal(
      code(() => rewrapDek(randomBytes(32), { algorithm, recipientPublicKey: key })),
      want,
      `${name} (rewrapDek)`,
    );
  }
  const msg = (() => {
    try {
      parseRecipientKey({ algorithm: 'RSA_OAEP_SHA256', recipientPublicKey: spki(rsa1024.publicKey) });
    } catch (e) {
      return (e as Error).message;
    }
    return '';
  })();
  t.match(msg, /2048 to 16384 bits, got 1024/, 'the size error says what is wrong');
  t.equal(
    code(() => rewrapDek(Buffer.alloc(0), { algorithm: 'RSA_OAEP_SHA256', recipientPublicKey: rsaE65537 })),
    'DEK_SIZE',
    'empty DEK',
  );
  t.equal(
    code(() => parseRecipientKey({ algorithm: 'RSA_OAEP_SHA256', recipientPublicKey: rsaE65537 })),
    'no error',
    'a good key passes',
  );
});
