// End to end: the real daemon (startDaemon: SoftHSM2 token, dev PKI, SQLite store,
// HSM-signed audit, demo KEK, all in a temp HYOKD_HOME) and the client commands with
// their defaults (bundle from $HYOKD_HOME/pki). Afterwards the audit log the daemon
// wrote verifies with `hyokd audit verify` and holds our request ids.
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { startDaemon, type Daemon } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/index.js';
import { silentLogger } from '../../src/log.js';
import { jsonLines, runCli, tempDir } from './client-harness.js';

const home = tempDir(t, 'hyokd-cli-e2e-');
let daemon: Daemon | undefined;
t.teardown(async () => {
  await daemon?.shutdown();
});

t.before(async () => {
  const config = loadConfig({ env: { HYOKD_HOME: home, HYOKD_SERVER_LISTEN: '127.0.0.1:0' }, cwd: home });
  daemon = await startDaemon(config, { log: silentLogger() });
});

const env = (): Record<string, string> => ({ HYOKD_HOME: home, HYOKD_ENDPOINT: daemon!.server.address });

t.test('generate-data-key, then unwrap returns the same DEK; AAD is bound', async (t) => {
  const g = await runCli(
    ['generate-data-key', '--key', 'demo', '--aad', 'order-1', '--request-id', 'e2e-gdk', '--json'],
    { env: env() },
  );
  t.equal(g.code, 0, g.stderr + g.stdout);
  const out = JSON.parse(g.stdout) as {
    plaintextDek: string;
    envelope: string;
    keyName: string;
    keyVersion: number;
  };
  t.equal(out.keyName, 'demo');
  t.equal(out.keyVersion, 1);
  t.equal(Buffer.from(out.plaintextDek, 'base64').length, 32);
  const u = await runCli(
    ['unwrap', '--envelope-base64', out.envelope, '--aad', 'order-1', '--request-id', 'e2e-unwrap', '--json'],
    { env: env() },
  );
  t.equal(u.code, 0, u.stderr);
  t.equal((JSON.parse(u.stdout) as { plaintextDek: string }).plaintextDek, out.plaintextDek);
  const bad = await runCli(['unwrap', '--envelope-base64', out.envelope, '--aad', 'order-2'], { env: env() });
  t.equal(bad.code, 1);
  t.match(bad.stderr, /INVALID_CIPHERTEXT/);
});

t.test('wrap a DEK, unwrap it; batch both ways', async (t) => {
  const dek = randomBytes(32);
  const w = await runCli(['wrap', '--key', 'demo', '--dek-base64', dek.toString('base64'), '--json'], {
    env: env(),
  });
  t.equal(w.code, 0, w.stderr);
  const envelope = (JSON.parse(w.stdout) as { envelope: string }).envelope;
  const u = await runCli(['unwrap', '--envelope-base64', envelope], { env: env() });
  t.match(u.stdout, `plaintext-dek: ${dek.toString('base64')}`);

  const deks = [randomBytes(16), randomBytes(32)];
  const bw = await runCli(['batch-wrap', '--json'], {
    env: env(),
    stdin: deks
      .map((d) => JSON.stringify({ key: 'demo', dekBase64: d.toString('base64'), aad: 'b' }))
      .join('\n'),
  });
  t.equal(bw.code, 0, bw.stderr + bw.stdout);
  const wrapped = jsonLines(bw.stdout) as { ok: boolean; envelopeBase64: string }[];
  t.same(
    wrapped.map((x) => x.ok),
    [true, true],
  );
  const bu = await runCli(['batch-unwrap', '--json'], {
    env: env(),
    stdin: wrapped.map((x) => JSON.stringify({ envelopeBase64: x.envelopeBase64, aad: 'b' })).join('\n'),
  });
  t.equal(bu.code, 0, bu.stderr + bu.stdout);
  t.same(
    (jsonLines(bu.stdout) as { dekBase64: string }[]).map((x) => x.dekBase64),
    deks.map((d) => d.toString('base64')),
  );
});

t.test('failures from the real server: unknown key, not allowed, DEK size', async (t) => {
  const nf = await runCli(['generate-data-key', '--key', 'no-such-key'], { env: env() });
  t.equal(nf.code, 1);
  t.match(
    nf.stderr,
    /error: (KEY_NOT_FOUND|PERMISSION_DENIED) /,
    'the default policy only grants the demo key',
  );
  const batch = await runCli(['batch-wrap', '--json'], {
    env: env(),
    stdin: JSON.stringify({ key: 'no-such-key', dekBase64: randomBytes(32).toString('base64') }),
  });
  t.equal(batch.code, 1, 'a failed item makes the exit code 1');
  t.match(jsonLines(batch.stdout)[0], { index: 0, ok: false });
  const admin = await runCli(['get-key', 'demo', '--bundle', `${home}/pki/admin.bundle.pem`, '--json'], {
    env: env(),
  });
  t.equal(admin.code, 0, 'the admin identity may read key metadata: ' + admin.stderr);
  t.match(JSON.parse(admin.stdout), { name: 'demo', state: 'ENABLED', algorithm: 'AES_256' });
});

t.test('the audit log the daemon wrote verifies and holds our request ids', async (t) => {
  await daemon!.shutdown();
  const v = await runCli(['audit', 'verify'], { env: { HYOKD_HOME: home } });
  t.equal(v.code, 0, v.stdout + v.stderr);
  t.match(v.stdout, /^OK: /);
  const s = await runCli(['audit', 'search', '--request-id', 'e2e-unwrap', '--json'], {
    env: { HYOKD_HOME: home },
  });
  t.equal(s.code, 0);
  const recs = jsonLines(s.stdout) as { requestId: string; key: { name: string } }[];
  t.equal(recs.length, 1);
  t.equal(recs[0]!.key.name, 'demo');
});
