// Token naming and usage derivation: labels stay short and distinct, usage follows the
// key's operations (DEK wrapping is GCM encrypt/decrypt, so wrapKey needs CKA_ENCRYPT).
import t from 'tap';
import { pairUsage, secretUsage, versionLabel, MAX_LABEL_LENGTH, newCkaId } from '../../src/keys/naming.js';
import { spkiFromAttributes, rawEcPoint } from '../../src/keys/spki.js';
import { generateKeyPairSync } from 'node:crypto';
import type { ObjectAttributes } from '../../src/hsm/types.js';

t.test('labels', async (t) => {
  t.equal(versionLabel('payments', 3), 'hyokd:payments:v3');
  const long = 'a'.repeat(128);
  const l1 = versionLabel(long, 12);
  t.ok(l1.length <= MAX_LABEL_LENGTH);
  t.match(l1, /^hyokd:a+~[0-9a-f]{8}:v12$/);
  t.not(versionLabel('a'.repeat(127) + 'b', 12), l1, 'names that share a prefix keep distinct labels');
  t.equal(newCkaId().length, 16);
  t.not(newCkaId().toString('hex'), newCkaId().toString('hex'));
});

t.test('usage from operations', async (t) => {
  t.same(secretUsage(['wrapKey', 'unwrapKey']), { encrypt: true, decrypt: true, wrap: true, unwrap: true });
  t.same(secretUsage(['encrypt']), { encrypt: true, decrypt: false, wrap: false, unwrap: false });
  const p = pairUsage(['sign', 'verify']);
  t.same(p.priv, { decrypt: false, unwrap: false, sign: true });
  t.same(p.pub, { encrypt: false, wrap: false, verify: true });
});

t.test('SPKI from HSM attributes', async (t) => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  const jwk = ec.export({ format: 'jwk' });
  const point = Buffer.concat([
    Buffer.from([4]),
    Buffer.from(jwk.x!, 'base64url'),
    Buffer.from(jwk.y!, 'base64url'),
  ]);
  const der = Buffer.concat([Buffer.from([0x04, 0x41]), point]);
  const base = { keyType: 'ec' } as ObjectAttributes;
  const want = ec.export({ type: 'spki', format: 'der' });
  t.ok(spkiFromAttributes({ ...base, ecPoint: der }).equals(want), 'DER-wrapped point');
  t.ok(spkiFromAttributes({ ...base, ecPoint: point }).equals(want), 'raw point');
  t.throws(() => rawEcPoint(Buffer.from([1, 2, 3])));
  t.throws(() => spkiFromAttributes({ keyType: 'aes' } as ObjectAttributes));
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
  const r = rsa.export({ format: 'jwk' });
  const spki = spkiFromAttributes({
    keyType: 'rsa',
    modulus: Buffer.concat([Buffer.from([0]), Buffer.from(r.n!, 'base64url')]),
    publicExponent: Buffer.from(r.e!, 'base64url'),
  } as ObjectAttributes);
  t.ok(spki.equals(rsa.export({ type: 'spki', format: 'der' })), 'leading zero byte of the modulus ignored');
});
