// `hyokd audit verify | tail | search` on a real audit directory written by src/audit's
// writer with a software signer; then tampered with, as someone with disk access would.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { RequestEvent } from '../../src/audit/index.js';
import { AuditWriter, SoftwareAuditSigner } from '../../src/audit/index.js';
import { jsonLines, runCli, tempDir } from './client-harness.js';

const signer = new SoftwareAuditSigner();

function request(i: number): RequestEvent {
  return {
    type: 'request',
    plane: 'data',
    identity: { fingerprint: 'ab'.repeat(32), san: `spiffe://hyokd.dev/svc-${i % 2}` },
    op: 'unwrapKey',
    key: { name: i % 3 === 0 ? 'payments' : 'other', version: 1 },
    decision: { allowed: true, rule: 'binding[0]:crypto-user' },
    result: { code: 'OK' },
    latencyMs: 1.25,
    peer: '127.0.0.1:5000',
    requestId: `req-${i}`,
  };
}

/** $HYOKD_HOME with an audit/ directory of `n` request records over several files. */
async function makeHome(t: Parameters<typeof tempDir>[0], n = 12): Promise<{ home: string; dir: string }> {
  const home = tempDir(t);
  const dir = join(home, 'audit');
  const w = await AuditWriter.open({ dir, signer, maxFileBytes: 2500, probeIntervalMs: 20 });
  for (let i = 0; i < n; i++) await w.append(request(i));
  await w.close();
  return { home, dir };
}

const files = (dir: string): string[] =>
  readdirSync(dir)
    .filter((f) => f.startsWith('audit-'))
    .sort();

t.test('verify: an untouched log is OK (DIR defaults to $HYOKD_HOME/audit)', async (t) => {
  const { home, dir } = await makeHome(t);
  const r = await runCli(['audit', 'verify'], { env: { HYOKD_HOME: home } });
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.match(r.stdout, /^OK: \d+ records, \d+ files, \d+ checkpoints, head #\d+ [0-9a-f]{16}$/m);
  const j = await runCli(['audit', 'verify', dir, '--json']);
  t.equal(j.code, 0);
  const rep = JSON.parse(j.stdout) as { ok: boolean; files: number; dir: string };
  t.equal(rep.ok, true);
  t.equal(rep.dir, dir);
  t.equal(rep.files, files(dir).length);
  t.ok(rep.files >= 2, 'several files');
  const rel = await runCli(['audit', 'verify', 'audit'], { cwd: home });
  t.equal(rel.code, 0, 'a relative DIR resolves against the working directory');
  const viaEnv = await runCli(['audit', 'verify'], { env: { HYOKD_HOME: home, HYOKD_AUDIT_DIR: dir } });
  t.equal(viaEnv.code, 0, 'HYOKD_AUDIT_DIR is honoured');
});

t.test('verify: an edited record fails, naming the file, line, seq and "modified"', async (t) => {
  const { dir } = await makeHome(t);
  const f = files(dir)[0]!;
  const lines = readFileSync(join(dir, f), 'utf8').split('\n');
  const i = lines.findIndex((l) => l.includes('"type":"request"'));
  const seq = (JSON.parse(lines[i]!) as { seq: number }).seq;
  lines[i] = lines[i]!.replace('"allowed":true', '"allowed":false');
  writeFileSync(join(dir, f), lines.join('\n'));
  const r = await runCli(['audit', 'verify', dir]);
  t.equal(r.code, 1);
  t.match(r.stdout, `FAILED modified at ${f} line ${i + 1} seq ${seq}:`);
  const j = await runCli(['audit', 'verify', dir, '--json']);
  t.equal(j.code, 1);
  t.match(JSON.parse(j.stdout), { ok: false, firstError: { kind: 'modified', file: f, line: i + 1, seq } });
  t.match(j.stderr, /FAILED modified/);
});

t.test('verify: a deleted record and a missing file are named', async (t) => {
  const { dir } = await makeHome(t);
  const f = files(dir)[0]!;
  const lines = readFileSync(join(dir, f), 'utf8').split('\n');
  const i = lines.findIndex((l) => l.includes('"type":"request"'));
  lines.splice(i, 1);
  writeFileSync(join(dir, f), lines.join('\n'));
  const r = await runCli(['audit', 'verify', dir]);
  t.equal(r.code, 1);
  t.match(r.stdout, /^FAILED (deleted|modified) at /);

  const second = await makeHome(t);
  const fs2 = files(second.dir);
  const { rmSync } = await import('node:fs');
  rmSync(join(second.dir, fs2[1]!));
  const m = await runCli(['audit', 'verify', second.dir]);
  t.equal(m.code, 1);
  t.match(m.stdout, /^FAILED missing-file/);
});

t.test('verify: a trusted key that did not sign fails as untrusted-key; the right one passes', async (t) => {
  const { dir } = await makeHome(t);
  const home = tempDir(t);
  const other = new SoftwareAuditSigner();
  const { createPublicKey } = await import('node:crypto');
  const pem = (spki: Buffer): string =>
    createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({
      format: 'pem',
      type: 'spki',
    }) as string;
  writeFileSync(join(home, 'right.pem'), pem(signer.publicKeySpkiDer()));
  writeFileSync(join(home, 'wrong.pem'), pem(other.publicKeySpkiDer()));
  const ok = await runCli(['audit', 'verify', dir, '--trusted-key', join(home, 'right.pem')]);
  t.equal(ok.code, 0, ok.stdout);
  const bad = await runCli(['audit', 'verify', dir, '--trusted-key', join(home, 'wrong.pem')]);
  t.equal(bad.code, 1);
  t.match(bad.stdout, /^FAILED untrusted-key/);
  writeFileSync(join(home, 'junk.pem'), 'junk');
  const junk = await runCli(['audit', 'verify', dir, '--trusted-key', join(home, 'junk.pem')]);
  t.equal(junk.code, 2);
  t.match(junk.stderr, /--trusted-key: .*junk\.pem is not a public key/);
});

t.test('tail prints the newest records, oldest first', async (t) => {
  const { home, dir } = await makeHome(t);
  const r = await runCli(['audit', 'tail', '-n', '3', '--json'], { env: { HYOKD_HOME: home } });
  t.equal(r.code, 0, r.stderr);
  const recs = jsonLines(r.stdout) as { seq: number }[];
  t.equal(recs.length, 3);
  t.ok(recs[0]!.seq < recs[1]!.seq && recs[1]!.seq < recs[2]!.seq);
  const all = jsonLines((await runCli(['audit', 'tail', dir, '-n', '100000', '--json'])).stdout) as {
    seq: number;
  }[];
  t.equal(recs[2]!.seq, all.at(-1)!.seq, 'the last one is the newest');
  const h = await runCli(['audit', 'tail', dir, '--lines', '50']);
  t.match(
    h.stdout,
    /#\d+ request data unwrapKey key=payments@1 by=spiffe:\/\/hyokd.dev\/svc-0 allow\(binding\[0\]:crypto-user\) OK/,
  );
});

t.test('search filters by key, identity, request id and time', async (t) => {
  const { dir } = await makeHome(t);
  const byKey = jsonLines((await runCli(['audit', 'search', dir, '--key', 'payments', '--json'])).stdout) as {
    key: { name: string };
  }[];
  t.equal(byKey.length, 4, 'requests 0, 3, 6, 9');
  t.ok(byKey.every((r) => r.key.name === 'payments'));
  const byId = jsonLines(
    (await runCli(['audit', 'search', dir, '--request-id', 'req-7', '--json'])).stdout,
  ) as {
    requestId: string;
  }[];
  t.same(
    byId.map((r) => r.requestId),
    ['req-7'],
  );
  const both = jsonLines(
    (
      await runCli([
        'audit',
        'search',
        dir,
        '--key',
        'payments',
        '--identity',
        'spiffe://hyokd.dev/svc-1',
        '--json',
      ])
    ).stdout,
  );
  t.equal(both.length, 2, 'requests 3 and 9');
  const limited = jsonLines(
    (await runCli(['audit', 'search', dir, '--type', 'request', '--limit', '5', '--json'])).stdout,
  );
  t.equal(limited.length, 5);
  const future = await runCli(['audit', 'search', dir, '--since', '2999-01-01T00:00:00Z']);
  t.equal(future.code, 0);
  t.equal(future.stdout, '');
  t.match(future.stderr, /no matching records/);
  const recent = jsonLines(
    (await runCli(['audit', 'search', dir, '--since', '1h', '--type', 'request', '--json'])).stdout,
  );
  t.equal(recent.length, 12, 'all written within the last hour');
  const old = jsonLines(
    (await runCli(['audit', 'search', dir, '--until', '2000-01-01T00:00:00Z', '--json'])).stdout,
  );
  t.equal(old.length, 0);
});
