import { X509Certificate } from 'node:crypto';
import t from 'tap';
import { CA_VALIDITY_DAYS, createCa, loadCa } from '../../src/pki/index.js';

const DAY = 24 * 60 * 60 * 1000;

t.test('a new CA is a self-signed EC P-256 CA valid for ten years', async (t) => {
  const ca = await createCa();
  const x = new X509Certificate(ca.certPem);
  t.equal(x.ca, true, 'basicConstraints cA');
  t.equal(x.subject, 'CN=hyokd dev CA\nO=hyokd');
  t.equal(x.issuer, x.subject, 'self-issued');
  t.ok(x.checkIssued(x), 'issuer matches subject');
  t.ok(x.verify(x.publicKey), 'signature verifies with its own key');
  t.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const lifetime = Date.parse(x.validTo) - Date.parse(x.validFrom);
  t.ok(Math.abs(lifetime - CA_VALIDITY_DAYS * DAY) < 2 * DAY, `lifetime ${lifetime / DAY} days`);
  t.ok(Date.parse(x.validFrom) <= Date.now(), 'already valid');
  t.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
});

t.test('two CAs are unrelated trust roots', async (t) => {
  const a = new X509Certificate((await createCa()).certPem);
  const b = new X509Certificate((await createCa({ commonName: 'foreign CA' })).certPem);
  t.notOk(a.checkIssued(b));
  t.notOk(b.verify(a.publicKey), 'foreign CA signature does not verify with ours');
  t.equal(b.subject, 'CN=foreign CA\nO=hyokd');
});

t.test('loadCa round-trips a CA', async (t) => {
  const ca = await createCa();
  const again = await loadCa(ca.certPem, ca.keyPem);
  t.equal(again.subject, ca.subject);
  t.equal(again.certPem, ca.certPem);
});

t.test('loadCa refuses a key that belongs to another CA', async (t) => {
  const ca = await createCa();
  const other = await createCa();
  await t.rejects(loadCa(ca.certPem, other.keyPem), /does not match certificate/);
});

t.test('loadCa refuses garbage key without echoing it', async (t) => {
  const ca = await createCa();
  const bogus = '-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n';
  const err = await loadCa(ca.certPem, bogus).then(
    () => null,
    (e: Error) => e,
  );
  t.ok(err, 'rejected');
  t.match(err?.message, /not a PKCS#8 EC P-256 key/);
  t.notMatch(err?.message, /c2VjcmV0/, 'key material is not in the message');
});

t.test('createCa validates its options', async (t) => {
  await t.rejects(createCa({ commonName: 'a,b' }), /commonName must be non-empty/);
  await t.rejects(createCa({ commonName: '' }), /commonName must be non-empty/);
  const now = new Date();
  await t.rejects(createCa({ notBefore: now, notAfter: now }), /notAfter .* must be later than notBefore/);
  await t.rejects(createCa({ notBefore: new Date('x') }), /valid dates/);
});
