import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import {
  DEV_ADMIN_ID,
  DEV_CLIENT_ID,
  createCa,
  issueAdminCert,
  issueClientCert,
  issueServerCert,
  type CertificateAuthority,
  type IssuedCertificate,
} from '../../src/pki/index.js';

const DAY = 24 * 60 * 60 * 1000;

let ca: CertificateAuthority;
let caX: X509Certificate;
t.before(async () => {
  ca = await createCa();
  caX = new X509Certificate(ca.certPem);
});

t.test('server certificate: chain, SANs, serverAuth', async (t) => {
  const s = await issueServerCert(ca);
  const x = new X509Certificate(s.certPem);
  t.ok(x.checkIssued(caX), 'issued by the CA');
  t.ok(x.verify(caX.publicKey), 'signed by the CA key');
  t.equal(x.ca, false);
  t.equal(x.subject, 'CN=localhost');
  t.equal(x.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
  t.same(x.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'extended key usage serverAuth only');
  t.equal(x.checkHost('localhost'), 'localhost');
  t.equal(x.checkIP('127.0.0.1'), '127.0.0.1');
  t.equal(x.checkIP('::1'), '::1');
  t.ok(x.checkPrivateKey((await import('node:crypto')).createPrivateKey(s.keyPem)), 'key matches');
});

t.test('server certificate options', async (t) => {
  const s = await issueServerCert(ca, { dnsNames: ['hsm.example.test'], ipAddresses: ['10.0.0.7'] });
  const x = new X509Certificate(s.certPem);
  t.equal(x.subjectAltName, 'DNS:hsm.example.test, IP Address:10.0.0.7');
  t.equal(x.subject, 'CN=hsm.example.test');
  await t.rejects(issueServerCert(ca, { ipAddresses: ['localhost'] }), /not an IPv4 or IPv6 address/);
  await t.rejects(issueServerCert(ca, { dnsNames: ['bad name'] }), /not a valid DNS name/);
});

t.test('client certificate: identity, clientAuth, chain', async (t) => {
  const c = await issueClientCert(ca, {
    uri: DEV_CLIENT_ID,
    dnsNames: ['svc.example.test'],
    commonName: 'svc',
  });
  const x = new X509Certificate(c.certPem);
  t.ok(x.checkIssued(caX));
  t.ok(x.verify(caX.publicKey));
  t.equal(x.subject, 'CN=svc');
  t.equal(x.subjectAltName, `URI:${DEV_CLIENT_ID}, DNS:svc.example.test`);
  t.same(x.keyUsage, ['1.3.6.1.5.5.7.3.2'], 'extended key usage clientAuth only');
});

t.test('admin certificate carries the admin SPIFFE ID', async (t) => {
  const a = await issueAdminCert(ca);
  const x = new X509Certificate(a.certPem);
  t.equal(x.subjectAltName, `URI:${DEV_ADMIN_ID}`);
  t.same(x.keyUsage, ['1.3.6.1.5.5.7.3.2']);
});

t.test('client certificate needs some identity and valid names', async (t) => {
  await t.rejects(issueClientCert(ca, {}), /needs an identity/);
  await t.rejects(issueClientCert(ca, { uri: 'not a uri' }), /not an absolute URI/);
  await t.rejects(issueClientCert(ca, { uri: 'spiffe:///path' }), /not a valid SPIFFE ID/);
  await t.rejects(issueClientCert(ca, { uri: 'spiffe://td/x?y=1' }), /not a valid SPIFFE ID/);
  await t.rejects(issueClientCert(ca, { dnsNames: ['-x-'] }), /not a valid DNS name/);
  const cnOnly = new X509Certificate((await issueClientCert(ca, { commonName: 'legacy-client' })).certPem);
  t.equal(cnOnly.subject, 'CN=legacy-client');
  t.equal(cnOnly.subjectAltName, undefined, 'no SAN extension when there are no names');
});

t.test('validity windows: default, explicit, expired, empty', async (t) => {
  const d = new X509Certificate((await issueClientCert(ca, { uri: DEV_CLIENT_ID })).certPem);
  t.ok(Date.parse(d.validTo) <= Date.parse(caX.validTo), 'default lifetime ends before the CA');
  t.ok(Date.parse(d.validTo) - Date.now() > 700 * DAY, 'about two years');

  const notBefore = new Date(Date.now() - 3 * DAY);
  const notAfter = new Date(Date.now() - DAY);
  const e = new X509Certificate(
    (await issueClientCert(ca, { uri: DEV_CLIENT_ID, notBefore, notAfter })).certPem,
  );
  t.equal(Date.parse(e.validTo), Math.floor(notAfter.getTime() / 1000) * 1000, 'expired notAfter kept');
  t.ok(Date.parse(e.validTo) < Date.now(), 'certificate is expired');
  t.ok(e.verify(caX.publicKey), 'still correctly signed');

  await t.rejects(
    issueClientCert(ca, { uri: DEV_CLIENT_ID, notBefore: notAfter, notAfter: notBefore }),
    /later than/,
  );
});

/** Runs one mutual-TLS handshake and returns the server's view or the client's error. */
async function handshake(
  server: IssuedCertificate,
  client: IssuedCertificate,
  trustedByServer: string,
): Promise<{ ok: true; peerUri: string | undefined } | { ok: false; error: string }> {
  let peerUri: string | undefined;
  const srv = tls.createServer(
    {
      cert: server.certPem,
      key: server.keyPem,
      ca: trustedByServer,
      requestCert: true,
      rejectUnauthorized: true,
    },
    (sock) => {
      peerUri = sock.getPeerCertificate().subjectaltname;
      sock.end('ok');
    },
  );
  srv.on('tlsClientError', () => {});
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  try {
    return await new Promise((resolve) => {
      const sock = tls.connect({
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        ca: ca.certPem,
        cert: client.certPem,
        key: client.keyPem,
      });
      let data = '';
      sock.on('data', (d: Buffer) => (data += d.toString()));
      sock.on('end', () => resolve(data === 'ok' ? { ok: true, peerUri } : { ok: false, error: 'closed' }));
      sock.on('error', (err: Error) => resolve({ ok: false, error: err.message }));
    });
  } finally {
    srv.close();
  }
}

t.test('real mutual TLS with the issued certificates', async (t) => {
  const server = await issueServerCert(ca);
  const client = await issueClientCert(ca, { uri: DEV_CLIENT_ID });
  const good = await handshake(server, client, ca.certPem);
  t.same(good, { ok: true, peerUri: `URI:${DEV_CLIENT_ID}` });

  const foreign = await createCa({ commonName: 'foreign CA' });
  const stranger = await issueClientCert(foreign, { uri: DEV_CLIENT_ID });
  const refused = await handshake(server, stranger, ca.certPem);
  t.equal(refused.ok, false, 'client from a foreign CA is refused');

  const expired = await issueClientCert(ca, {
    uri: DEV_CLIENT_ID,
    notBefore: new Date(Date.now() - 2 * DAY),
    notAfter: new Date(Date.now() - DAY),
  });
  const late = await handshake(server, expired, ca.certPem);
  t.equal(late.ok, false, 'expired client certificate is refused');
});
