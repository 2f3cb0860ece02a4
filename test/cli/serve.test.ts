/* eslint-disable @typescript-eslint/no-explicit-any -- messages of dynamically loaded gRPC clients are untyped */
// `hyokd serve` as a real process: the embedded default on first run, the printed
// instructions, SIGHUP certificate reload with a stream open, SIGTERM drain, and a
// second run that reuses everything.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { connect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { credentials, type ClientDuplexStream } from '@grpc/grpc-js';
import t from 'tap';
import { issueServerCert, loadCa, parseBundle } from '../../src/pki/index.js';
import { hyokGrpcObject } from '../../src/server/proto.js';
import { call, settle } from '../server/fixtures.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const home = mkdtempSync(join(tmpdir(), 'hyokd-serve-'));
t.teardown(() => rmSync(home, { recursive: true, force: true }));

interface Running {
  child: ChildProcess;
  port: number;
  stderr: () => string;
  stdout: () => string;
  exited: Promise<number | null>;
}

function entry(): string[] {
  const dist = join(root, 'dist', 'src', 'cli', 'main.js');
  const src = join(root, 'src', 'cli', 'main.ts');
  // `npm test` builds dist first; otherwise run the TypeScript entry with the test's loader.
  if (
    existsSync(dist) &&
    lstatSync(dist).mtimeMs >= lstatSync(join(root, 'src', 'cli', 'serve.ts')).mtimeMs
  ) {
    return [dist];
  }
  return [...process.execArgv.filter((a) => a.startsWith('--import')), src];
}

async function start(): Promise<Running> {
  const child = spawn(process.execPath, [...entry(), 'serve'], {
    cwd: home,
    env: {
      ...process.env,
      HYOKD_HOME: join(home, 'var'),
      HYOKD_SERVER_LISTEN: '127.0.0.1:0',
      HYOKD_METRICS_LISTEN: '127.0.0.1:0',
      HYOKD_CONFIG: '',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${err}\n${out}`)), 60_000);
    const check = () => {
      const m = /serving hyok\.v1 on 127\.0\.0\.1:(\d+)/.exec(err);
      if (m && err.includes('SIGTERM drains')) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stderr!.on('data', check);
    void exited.then((code) => reject(new Error(`serve exited with ${code}:\n${err}\n${out}`)));
  });
  return { child, port, stderr: () => err, stdout: () => out, exited };
}

async function waitFor(what: () => boolean, ms = 10_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (!what() && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
  return what();
}

function client(port: number) {
  const b = parseBundle(readFileSync(join(home, 'var', 'pki', 'client.bundle.pem'), 'utf8'));
  const Ctor = (hyokGrpcObject() as any).hyok.v1.Hyok;
  return new Ctor(
    `127.0.0.1:${port}`,
    credentials.createSsl(Buffer.from(b.caPem), Buffer.from(b.keyPem), Buffer.from(b.certPem)),
  );
}

/** The serial number of the certificate a new TLS connection is given. */
function servedSerial(port: number): Promise<string> {
  const b = parseBundle(readFileSync(join(home, 'var', 'pki', 'client.bundle.pem'), 'utf8'));
  return new Promise((resolve, reject) => {
    const s = connect(
      { host: '127.0.0.1', port, ca: b.caPem, key: b.keyPem, cert: b.certPem, ALPNProtocols: ['h2'] },
      () => {
        resolve(s.getPeerCertificate().serialNumber);
        s.destroy();
      },
    );
    s.on('error', reject);
  });
}

let firstEnvelope: Buffer;
let firstDek: Buffer;

t.test('first run: creates the embedded default and prints how to call it', async (t) => {
  const r = await start();
  t.teardown(() => {
    r.child.kill('SIGKILL');
  });
  const banner = r.stderr();
  t.match(banner, /first run in var: created/);
  t.match(banner, /SoftHSM2 token "hyokd"/);
  t.match(banner, /demo KEK "demo"/);
  t.match(
    banner,
    /V8 allocation-site pretenuring: off/,
    'serve turns pretenuring off (src/cli/pretenuring.ts)',
  );
  t.match(
    banner,
    /generate-data-key --key demo --endpoint 127\.0\.0\.1:\d+ --bundle var\/pki\/client\.bundle\.pem/,
  );
  t.match(banner, /grpcurl -cacert var\/pki\/ca\.pem -cert var\/pki\/client\.pem -key var\/pki\/client\.key/);
  t.match(banner, /wrap --key demo --dek-file var\/my\.dek/, 'a DEK of your own is shown in a file');
  t.notMatch(banner, /--dek-base64/, 'never a DEK in argv');
  t.notMatch(
    banner,
    new RegExp(readFileSync(join(home, 'var', 'secrets', 'hsm-user.pin'), 'utf8').trim()),
    'no PIN printed',
  );
  t.ok(
    lstatSync(join(home, 'var', 'hsm.pin')).isSymbolicLink(),
    'hsm.pin points at the provisioned PIN file',
  );
  t.ok(existsSync(join(home, 'var', 'policy.yaml')));
  t.ok(existsSync(join(home, 'var', 'hyokd.db')));
  const c = client(r.port);
  const g = await call<{ envelope: Buffer; plaintextDek: Buffer }>(c, 'GenerateDataKey', { keyName: 'demo' });
  const u = await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: g.envelope });
  t.same(u.plaintextDek, g.plaintextDek, 'the demo key works with the dev client bundle');
  firstEnvelope = g.envelope;
  firstDek = g.plaintextDek;
  for (const line of r.stdout().trim().split('\n')) JSON.parse(line); // stdout is JSON lines only

  // SIGHUP: reissue the server certificate, keep a stream open across the reload.
  const serialBefore = await servedSerial(r.port);
  const stream = (c.UnwrapStream as () => ClientDuplexStream<any, any>).call(c);
  const answers: any[] = [];
  stream.on('data', (m) => answers.push(m));
  stream.on('error', () => {});
  stream.write({ correlationId: 'a', request: { envelope: g.envelope } });
  t.ok(await waitFor(() => answers.length === 1));
  const pki = join(home, 'var', 'pki');
  const ca = await loadCa(
    readFileSync(join(pki, 'ca.pem'), 'utf8'),
    readFileSync(join(pki, 'ca.key'), 'utf8'),
  );
  const fresh = await issueServerCert(ca);
  writeFileSync(join(pki, 'server.key'), fresh.keyPem, { mode: 0o600 });
  writeFileSync(join(pki, 'server.pem'), fresh.certPem);
  r.child.kill('SIGHUP');
  t.ok(await waitFor(() => r.stdout().includes('TLS certificates reloaded')), 'the reload is logged');
  const serialAfter = await servedSerial(r.port);
  t.not(serialAfter, serialBefore, 'new connections get the new certificate');
  stream.write({ correlationId: 'b', request: { envelope: g.envelope } });
  t.ok(await waitFor(() => answers.length === 2), 'the stream opened before SIGHUP still answers');
  t.same(answers[1].result.plaintextDek, g.plaintextDek);
  stream.end();

  // SIGTERM with calls in flight: they complete, the process exits 0.
  const inflight = Array.from({ length: 20 }, () =>
    call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: g.envelope }),
  );
  await new Promise((res) => setImmediate(res));
  r.child.kill('SIGTERM');
  const settled = await Promise.allSettled(inflight);
  const ok = settled.filter((s) => s.status === 'fulfilled').length;
  t.ok(ok > 0, `${ok} of 20 in-flight calls completed during the drain`);
  t.equal(await r.exited, 0, 'exit code 0 after a complete drain');
  t.match(r.stdout(), /"drained":true/);
  c.close();
});

t.test('second run: reuses token, PKI, policy and key', async (t) => {
  const pinBefore = readFileSync(join(home, 'var', 'secrets', 'hsm-user.pin'));
  const r = await start();
  t.teardown(() => {
    r.child.kill('SIGKILL');
  });
  t.notMatch(r.stderr(), /first run/, 'nothing to create');
  t.same(readFileSync(join(home, 'var', 'secrets', 'hsm-user.pin')), pinBefore);
  const c = client(r.port);
  const u = await call<{ plaintextDek: Buffer; keyVersion: number }>(c, 'Unwrap', {
    envelope: firstEnvelope,
  });
  t.same(u.plaintextDek, firstDek, 'an envelope from the first run opens');
  c.close();
  r.child.kill('SIGTERM');
  t.equal(await r.exited, 0);
});

t.test('the admin service is served too, for the admin certificate only', async (t) => {
  const r = await start();
  t.teardown(() => {
    r.child.kill('SIGKILL');
  });
  const { adminGrpcObject } = await import('../../src/server/admin-proto.js');
  const Admin = (adminGrpcObject() as any).hyok.admin.v1.KeyAdmin;
  const open = (bundle: string) => {
    const b = parseBundle(readFileSync(join(home, 'var', 'pki', bundle), 'utf8'));
    return new Admin(
      `127.0.0.1:${r.port}`,
      credentials.createSsl(Buffer.from(b.caPem), Buffer.from(b.keyPem), Buffer.from(b.certPem)),
    );
  };
  const admin = open('admin.bundle.pem');
  const listed = await call<{ keys: { name: string }[] }>(admin, 'ListKeys', {});
  t.ok(
    listed.keys.some((k) => k.name === 'demo'),
    'the admin lists the demo key',
  );
  const m = /Metrics: (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(r.stderr());
  t.ok(m, 'the banner names the metrics endpoint');
  const text = await (await fetch(m![1]!)).text();
  t.match(text, /hyokd_[a-z_]+\{[^}]*method="ListKeys"[^}]*\} 1/, 'the admin call was counted');
  const notAdmin = open('client.bundle.pem');
  const [e] = await settle(call(notAdmin, 'ListKeys', {}));
  t.equal(e?.code, 7, 'the client certificate may not administer');
  admin.close();
  notAdmin.close();

  // A second daemon on the same data folder is refused while this one runs.
  const second = spawn(process.execPath, [...entry(), 'serve'], {
    cwd: home,
    env: {
      ...process.env,
      HYOKD_HOME: join(home, 'var'),
      HYOKD_SERVER_LISTEN: '127.0.0.1:0',
      HYOKD_METRICS_LISTEN: '127.0.0.1:0',
      HYOKD_CONFIG: '',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err2 = '';
  second.stderr!.on('data', (d: Buffer) => (err2 += d.toString()));
  const code2 = await new Promise<number | null>((res) => second.on('exit', (c) => res(c)));
  t.equal(code2, 1, 'the second daemon exits 1');
  t.match(err2, new RegExp(`another hyokd \\(pid ${r.child.pid}\\) is using the data folder`));

  r.child.kill('SIGTERM');
  t.equal(await r.exited, 0);
  t.notOk(existsSync(join(home, 'var', 'hyokd.lock')), 'the lock is released on shutdown');
});
