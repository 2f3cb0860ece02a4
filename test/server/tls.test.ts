/* eslint-disable @typescript-eslint/no-explicit-any -- messages of dynamically loaded gRPC clients are untyped */
// Mutual TLS: no client certificate, a certificate from another CA and an expired one
// fail the handshake. Reloading certificates and the trust bundle affects new
// connections only: an established stream keeps working.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type ClientDuplexStream } from '@grpc/grpc-js';
import t from 'tap';
import { createCa, DEV_CLIENT_ID, issueClientCert, issueServerCert } from '../../src/pki/index.js';
import { hyokGrpcObject } from '../../src/server/proto.js';
import { ReloadableTls } from '../../src/server/tls-credentials.js';
import { call, settle, startHarness, type HyokClient } from './fixtures.js';

const h = await startHarness();
t.teardown(() => h.close());

const Ctor = (hyokGrpcObject() as any).hyok.v1.Hyok;
const echo = (c: HyokClient) =>
  call<{ payload: Buffer }>(c, 'Echo', { payload: Buffer.from('hi') }, { deadline: Date.now() + 5000 });

t.test('a trusted client certificate connects', async (t) => {
  const r = await echo(h.client());
  t.equal(r.payload.toString(), 'hi');
});

t.test('no client certificate: the handshake fails', async (t) => {
  const c = new Ctor(`127.0.0.1:${h.server.port}`, credentials.createSsl(Buffer.from(h.ca.certPem)));
  t.teardown(() => c.close());
  const [e] = await settle(echo(c));
  t.equal(e?.code, 14, 'UNAVAILABLE: no connection');
  t.equal(
    h.calls.filter((r) => r.method === 'Echo' && r.identityClass === 'anonymous').length,
    0,
    'no call reached a handler',
  );
});

t.test('a client certificate from another CA: the handshake fails', async (t) => {
  const foreign = await createCa({ commonName: 'foreign' });
  const cert = await issueClientCert(foreign, { uri: DEV_CLIENT_ID });
  const [e] = await settle(echo(h.client(cert)));
  t.equal(e?.code, 14);
});

t.test('an expired client certificate: the handshake fails', async (t) => {
  const day = 86_400_000;
  const cert = await issueClientCert(h.ca, {
    uri: DEV_CLIENT_ID,
    notBefore: new Date(Date.now() - 10 * day),
    notAfter: new Date(Date.now() - day),
  });
  const [e] = await settle(echo(h.client(cert)));
  t.equal(e?.code, 14);
});

t.test(
  'reload: new connections get the new certificate and trust bundle; an open stream keeps going',
  async (t) => {
    const g = await call<{ envelope: Buffer; plaintextDek: Buffer }>(h.client(), 'GenerateDataKey', {
      keyName: 'demo',
    });
    // An established stream on the old certificates.
    const oldClient = h.client();
    const stream = (oldClient.UnwrapStream as () => ClientDuplexStream<any, any>).call(oldClient);
    const answers: any[] = [];
    let notify: (() => void) | null = null;
    stream.on('data', (m) => {
      answers.push(m);
      notify?.();
    });
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    const next = (id: string) =>
      new Promise<any>((resolve) => {
        notify = () => {
          const m = answers.find((a) => a.correlationId === id);
          if (m) resolve(m);
        };
        stream.write({ correlationId: id, request: { envelope: g.envelope } });
      });
    t.same((await next('before')).result.plaintextDek, g.plaintextDek);

    // New CA for both the server certificate and the client trust bundle.
    const ca2 = await createCa({ commonName: 'hyokd test CA 2' });
    const server2 = await issueServerCert(ca2);
    const dir = mkdtempSync(join(tmpdir(), 'hyokd-tls-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const files = { cert: join(dir, 's.pem'), key: join(dir, 's.key'), clientCa: join(dir, 'ca.pem') };
    writeFileSync(files.cert, server2.certPem);
    writeFileSync(files.key, server2.keyPem);
    writeFileSync(files.clientCa, ca2.certPem);
    // The server's provider re-reads files; point a file-backed provider's material at it.
    const fromFiles = await ReloadableTls.fromFiles(files);
    t.equal(fromFiles.generation, 1);
    const before = h.tls.generation;
    h.tls.update({
      cert: Buffer.from(server2.certPem),
      key: Buffer.from(server2.keyPem),
      clientCa: Buffer.from(ca2.certPem),
    });
    t.equal(h.tls.generation, before + 1);

    // The stream opened before the reload keeps working.
    t.same((await next('after')).result.plaintextDek, g.plaintextDek, 'in-flight stream survives the reload');

    // New connections: the old trust no longer verifies the server; the old client cert is no longer trusted.
    const [eOld] = await settle(echo(h.client(h.clientCert, h.ca.certPem)));
    t.equal(eOld?.code, 14, 'a client trusting only the old CA fails');
    const [eOldClientCert] = await settle(echo(h.client(h.clientCert, ca2.certPem)));
    t.equal(eOldClientCert?.code, 14, 'a client certificate from the old CA is no longer trusted');
    const client2 = await issueClientCert(ca2, { uri: DEV_CLIENT_ID });
    const ok = await echo(h.client(client2, ca2.certPem));
    t.equal(ok.payload.toString(), 'hi', 'new certificates work for new connections');

    stream.end();
    await ended;
    t.equal(answers.length, 2);
  },
);

t.test('reload from files: a bad file keeps the old material', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hyokd-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files = { cert: join(dir, 's.pem'), key: join(dir, 's.key'), clientCa: join(dir, 'ca.pem') };
  writeFileSync(files.cert, h.serverCert.certPem);
  writeFileSync(files.key, h.serverCert.keyPem);
  writeFileSync(files.clientCa, h.ca.certPem);
  const tls = await ReloadableTls.fromFiles(files);
  const other = await issueServerCert(h.ca);
  writeFileSync(files.key, other.keyPem); // key no longer matches the certificate
  const bad = await tls.reload();
  t.equal(bad.ok, false);
  t.match(!bad.ok && bad.error, /TLS material rejected/);
  t.notMatch(!bad.ok && bad.error, /PRIVATE KEY/, 'no key material in the message');
  t.equal(tls.generation, 1);
  writeFileSync(files.cert, other.certPem);
  const good = await tls.reload();
  t.same(good, { ok: true, generation: 2 });
  writeFileSync(files.clientCa, 'not a certificate');
  t.equal((await tls.reload()).ok, false, 'an empty trust bundle is refused');
});
