import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmod, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import {
  DEV_ADMIN_ID,
  DEV_CLIENT_ID,
  certificateIdentity,
  devPkiPaths,
  ensureDevPki,
  issueClientCert,
  loadCa,
  parseBundle,
} from '../../src/pki/index.js';

const DAY = 24 * 60 * 60 * 1000;
const mode = async (p: string) => (await stat(p)).mode & 0o777;

t.test('first run creates a complete PKI with tight modes', async (t) => {
  const dir = join(t.testdir(), 'pki');
  const pki = await ensureDevPki(dir);
  const p = pki.paths;
  t.same([...pki.written].sort(), [
    'admin.bundle.pem',
    'admin.key',
    'admin.pem',
    'ca.key',
    'ca.pem',
    'client.bundle.pem',
    'client.key',
    'client.pem',
    'server.key',
    'server.pem',
  ]);
  t.same((await readdir(dir)).sort(), [...pki.written].sort(), 'no temp or lock files left behind');
  t.equal(await mode(dir), 0o700, 'dir 0700');
  for (const k of [p.caKey, p.serverKey, p.clientKey, p.adminKey, p.clientBundle, p.adminBundle]) {
    t.equal(await mode(k), 0o600, `${k.slice(dir.length + 1)} 0600`);
  }
  t.equal(await mode(p.caCert), 0o644);

  const ca = new X509Certificate(await readFile(p.caCert));
  for (const [cert, key] of [
    [p.serverCert, p.serverKey],
    [p.clientCert, p.clientKey],
    [p.adminCert, p.adminKey],
  ] as const) {
    const x = new X509Certificate(await readFile(cert));
    t.ok(x.checkIssued(ca) && x.verify(ca.publicKey), `${cert.slice(dir.length + 1)} chains to ca.pem`);
    t.ok(x.checkPrivateKey(createPrivateKey(await readFile(key))), `${key.slice(dir.length + 1)} matches`);
  }
  t.equal(certificateIdentity(await readFile(p.clientCert)).identity, DEV_CLIENT_ID);
  t.equal(certificateIdentity(await readFile(p.adminCert)).identity, DEV_ADMIN_ID);
  const bundle = parseBundle(await readFile(p.clientBundle, 'utf8'));
  t.equal(bundle.certPem, await readFile(p.clientCert, 'utf8'));
  t.equal(bundle.caPem, await readFile(p.caCert, 'utf8'));
});

t.test('second run reuses everything', async (t) => {
  const dir = t.testdir();
  const first = await ensureDevPki(dir);
  const before = await snapshot(dir);
  const second = await ensureDevPki(dir);
  t.same(second.written, [], 'nothing written');
  t.same(await snapshot(dir), before, 'contents unchanged');
  t.same(second.paths, first.paths);
});

t.test('a missing or foreign leaf is reissued under the same CA', async (t) => {
  const dir = t.testdir();
  const { paths } = await ensureDevPki(dir);
  const caPem = await readFile(paths.caCert, 'utf8');
  const oldClient = await readFile(paths.clientCert, 'utf8');
  await rm(paths.serverKey);
  await writeFile(paths.clientKey, await readFile(paths.adminKey)); // key no longer matches
  const again = await ensureDevPki(dir);
  t.same([...again.written].sort(), [
    'client.bundle.pem',
    'client.key',
    'client.pem',
    'server.key',
    'server.pem',
  ]);
  t.equal(await readFile(paths.caCert, 'utf8'), caPem, 'CA kept');
  t.not(await readFile(paths.clientCert, 'utf8'), oldClient, 'client reissued');
});

t.test('an expired (or soon expiring) leaf is reissued', async (t) => {
  const dir = t.testdir();
  const { paths } = await ensureDevPki(dir);
  const ca = await loadCa(await readFile(paths.caCert, 'utf8'), await readFile(paths.caKey, 'utf8'));
  const old = await issueClientCert(ca, {
    uri: DEV_ADMIN_ID,
    notBefore: new Date(Date.now() - 10 * DAY),
    notAfter: new Date(Date.now() + DAY),
  });
  await writeFile(paths.adminCert, old.certPem);
  await writeFile(paths.adminKey, old.keyPem);
  const again = await ensureDevPki(dir);
  t.same([...again.written].sort(), ['admin.bundle.pem', 'admin.key', 'admin.pem']);
  const x = new X509Certificate(await readFile(paths.adminCert));
  t.ok(Date.parse(x.validTo) > Date.now() + 300 * DAY, 'fresh certificate');
});

t.test('loose modes are tightened on reuse', async (t) => {
  const dir = t.testdir();
  const { paths } = await ensureDevPki(dir);
  await chmod(paths.caKey, 0o644);
  await chmod(paths.clientBundle, 0o640);
  await chmod(dir, 0o755);
  await ensureDevPki(dir);
  t.equal(await mode(paths.caKey), 0o600);
  t.equal(await mode(paths.clientBundle), 0o600);
  t.equal(await mode(dir), 0o700);
});

t.test('half a CA is an error that says how to start over', async (t) => {
  const dir = t.testdir();
  const { paths } = await ensureDevPki(dir);
  await rm(paths.caKey);
  await t.rejects(ensureDevPki(dir), /ca\.key is missing; remove the directory/);
});

t.test('a CA key that does not match is an error', async (t) => {
  const dir = t.testdir();
  const { paths } = await ensureDevPki(dir);
  const other = await ensureDevPki(join(dir, 'other'));
  await writeFile(paths.caKey, await readFile(other.paths.caKey));
  await t.rejects(ensureDevPki(dir), /CA .* is unusable: CA private key does not match/);
});

t.test('concurrent first runs agree on one CA', async (t) => {
  const dir = join(t.testdir(), 'pki');
  const [a, b] = await Promise.all([ensureDevPki(dir), ensureDevPki(dir)]);
  t.equal(a.written.length + b.written.length, 10, 'files written once in total');
  const p = devPkiPaths(dir);
  await t.resolves(loadCa(await readFile(p.caCert, 'utf8'), await readFile(p.caKey, 'utf8')));
  const ca = new X509Certificate(await readFile(p.caCert));
  t.ok(new X509Certificate(await readFile(p.serverCert)).verify(ca.publicKey));
});

async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of await readdir(dir)) {
    const st = await stat(join(dir, f));
    out[f] = `${st.mode.toString(8)} ${st.mtimeMs} ${await readFile(join(dir, f), 'utf8')}`;
  }
  return out;
}
