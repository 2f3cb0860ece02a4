import { X509Certificate } from 'node:crypto';
import t from 'tap';
import {
  DEV_CLIENT_ID,
  certificateIdentity,
  createCa,
  issueClientCert,
  issueServerCert,
  type CertificateAuthority,
} from '../../src/pki/index.js';

let ca: CertificateAuthority;
t.before(async () => {
  ca = await createCa();
});

t.test('URI SAN wins over DNS SAN and CN', async (t) => {
  const c = await issueClientCert(ca, {
    uri: DEV_CLIENT_ID,
    dnsNames: ['svc.example.test'],
    commonName: 'svc',
  });
  const id = certificateIdentity(c.certPem);
  t.equal(id.identity, DEV_CLIENT_ID);
  t.equal(id.source, 'uri');
  t.equal(id.subject, 'CN=svc');
  t.ok(Object.isFrozen(id));
});

t.test('DNS SAN is used when there is no URI SAN', async (t) => {
  const c = await issueClientCert(ca, {
    dnsNames: ['svc.example.test', 'other.example.test'],
    commonName: 'svc',
  });
  const id = certificateIdentity(c.certPem);
  t.equal(id.identity, 'svc.example.test');
  t.equal(id.source, 'dns');
});

t.test('subject CN is the last resort', async (t) => {
  const c = await issueClientCert(ca, { commonName: 'legacy-client' });
  const id = certificateIdentity(c.certPem);
  t.equal(id.identity, 'legacy-client');
  t.equal(id.source, 'cn');
});

t.test('IP SANs are not identities: a server cert resolves to its DNS SAN', async (t) => {
  const s = await issueServerCert(ca, { dnsNames: [], ipAddresses: ['127.0.0.1'], commonName: 'srv' });
  t.equal(certificateIdentity(s.certPem).identity, 'srv');
});

t.test('fingerprint is SHA-256 of the DER, same from PEM and from DER', async (t) => {
  const c = await issueClientCert(ca, { uri: DEV_CLIENT_ID });
  const x = new X509Certificate(c.certPem);
  const fromPem = certificateIdentity(c.certPem);
  const fromDer = certificateIdentity(x.raw);
  const expected = x.fingerprint256.replace(/:/g, '').toLowerCase();
  t.equal(fromPem.fingerprint256, expected);
  t.match(fromPem.fingerprint256, /^[0-9a-f]{64}$/);
  t.same(fromDer, fromPem);
  t.equal(fromPem.serialNumber, x.serialNumber.toLowerCase());
  t.equal(fromPem.notAfter.getTime(), Date.parse(x.validTo));
});

t.test('a DER slice inside a larger buffer is read correctly', async (t) => {
  const c = await issueClientCert(ca, { uri: DEV_CLIENT_ID });
  const raw = new X509Certificate(c.certPem).raw;
  const big = Buffer.concat([Buffer.alloc(7, 0xaa), raw, Buffer.alloc(5, 0xbb)]);
  const slice = big.subarray(7, 7 + raw.length);
  t.equal(certificateIdentity(slice).identity, DEV_CLIENT_ID);
});

t.test('bad input is refused', async (t) => {
  t.throws(() => certificateIdentity('hello'), /expected a PEM "CERTIFICATE" block/);
  const keyOnly = (await issueClientCert(ca, { uri: DEV_CLIENT_ID })).keyPem;
  t.throws(() => certificateIdentity(keyOnly), /expected a PEM "CERTIFICATE" block/);
  t.throws(
    () => certificateIdentity(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01])),
    /not a DER X.509 certificate/,
  );
});
