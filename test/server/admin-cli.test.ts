// The operator's path: `hyokd keys …`, `hyokd policy …` and the BYOK flow run by the
// real CLI against a real KeyAdmin (SoftHSM2, SQLite, policy file, audit), checked
// against the server's state.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { DEV_CLIENT_ID, formatBundle } from '../../src/pki/index.js';
import { jsonLines, runCli, tempDir } from '../cli/client-harness.js';
import { startAdminHarness } from './admin-harness.js';

const h = await startAdminHarness({ keys: [] });
t.teardown(() => h.close());
const dir = tempDir(t, 'hyokd-admin-cli-');
const bundle = join(dir, 'admin.bundle.pem');
writeFileSync(
  bundle,
  formatBundle({ keyPem: h.adminCert.keyPem, certPem: h.adminCert.certPem, caPem: h.ca.certPem }),
  { mode: 0o600 },
);
const conn = ['--endpoint', `127.0.0.1:${h.server.port}`, '--bundle', bundle];

async function cli(...argv: string[]) {
  return runCli([...argv, ...conn], { env: {}, cwd: dir });
}

async function ok(t: Test, ...argv: string[]): Promise<Record<string, unknown>> {
  const r = await cli(...argv, '--json');
  t.equal(r.code, 0, `hyokd ${argv.join(' ')}${r.code === 0 ? '' : `: ${r.stderr}`}`);
  return (jsonLines(r.stdout).at(-1) ?? {}) as Record<string, unknown>;
}

t.test('key lifecycle from the CLI', async (t) => {
  await ok(t, 'keys', 'create', 'life', '--kind', 'aes-256', '--purge-protection', '--retention-days', '7');
  t.equal((await h.keys.describe('life')).purgeProtection, true);
  const list = await cli('keys', 'list');
  t.equal(list.code, 0);
  t.match(list.stdout, /life/);
  await ok(t, 'keys', 'rotate', 'life');
  t.equal((await h.keys.describe('life')).primaryVersion, 2);
  await ok(t, 'keys', 'disable', 'life');
  t.equal((await h.keys.describe('life')).state, 'disabled');
  await ok(t, 'keys', 'enable', 'life');
  t.equal((await h.keys.describe('life')).state, 'enabled');
  await ok(t, 'keys', 'tag', 'life', '--set', 'team=a');
  t.same((await h.keys.describe('life')).tags, { team: 'a' });
  await ok(t, 'keys', 'rotation', 'life', '--rotate-after', '30d');
  t.equal((await h.keys.describe('life')).rotation.rotationPeriodDays, 30);
  const get = await cli('keys', 'get', 'life');
  t.equal(get.code, 0);
  t.match(get.stdout, /life/);
  await ok(t, 'keys', 'delete', 'life');
  t.equal((await h.keys.describe('life')).state, 'soft-deleted');
  const purge = await cli('keys', 'purge', 'life');
  t.not(purge.code, 0, 'purge under protection fails');
  t.match(purge.stderr, /PURGE_PROTECTED|purge-protected/);
  await ok(t, 'keys', 'recover', 'life');
  t.equal((await h.keys.describe('life')).state, 'enabled');
});

t.test('policy show, explain and set from the CLI', async (t) => {
  const show = await cli('policy', 'show');
  t.equal(show.code, 0);
  t.match(show.stdout, /crypto-user/);
  const ex = await cli(
    'policy',
    'explain',
    '--identity',
    DEV_CLIENT_ID,
    '--permission',
    'purge',
    '--key',
    'life',
  );
  t.equal(ex.code, 0, ex.stderr);
  t.match(ex.stdout, /DENIED by default-deny/);
  const next = `${readFileSync(h.policyFile, 'utf8')}# set from the CLI\n`;
  const file = join(dir, 'next.yaml');
  writeFileSync(file, next);
  const set = await cli('policy', 'set', file);
  t.equal(set.code, 0, set.stderr);
  t.equal(readFileSync(h.policyFile, 'utf8'), next);
});

t.test('BYOK from the CLI: import-key, byok pack, keys import', async (t) => {
  const pub = join(dir, 'exchange.pem');
  const ik = await ok(t, 'keys', 'import-key', '--out', pub);
  const id = String(ik.importKeyId);
  t.match(id, /^[0-9a-f]{32}$/);
  const raw = join(dir, 'aes.key');
  writeFileSync(raw, randomBytes(32), { mode: 0o600 });
  const blob = join(dir, 'aes.blob');
  const pack = await runCli(['byok', 'pack', '--public-key', pub, '--key-file', raw, '--out', blob], {
    env: {},
    cwd: dir,
  });
  t.equal(pack.code, 0, pack.stderr);
  await ok(
    t,
    'keys',
    'import',
    'byok1',
    '--kind',
    'aes-256',
    '--import-key-id',
    id,
    '--blob',
    blob,
    '--wrap-alg',
    'rsa-aes-kw-sha1',
  );
  t.equal((await h.keys.describe('byok1')).origin, 'imported');
});

t.test('domain init/show, keys create --backupable, keys protect from the CLI', async (t) => {
  const none = await ok(t, 'domain', 'show');
  t.equal(none.domain, null, 'no domain yet');
  const init = (await ok(t, 'domain', 'init')) as { created: boolean; domain: { domainId: string } };
  t.equal(init.created, true);
  t.equal((await h.store.getDomain())?.domainId, init.domain.domainId, 'the server store is bound');
  const show = (await ok(t, 'domain', 'show')) as { domain: { domainId: string } };
  t.equal(show.domain.domainId, init.domain.domainId);
  const joined = await cli('domain', 'join', '--domain-id', 'other', '--backup-key-id', 'abcd');
  t.equal(joined.code, 1, 'a bound server refuses to join another domain');
  t.equal((await h.store.getDomain())?.domainId, init.domain.domainId);

  await ok(t, 'keys', 'create', 'bk-cli', '--kind', 'aes-256', '--backupable');
  const out = join(dir, 'bk-cli.backup');
  await ok(t, 'keys', 'backup', 'bk-cli', '--out', out);
  t.ok(readFileSync(out).length > 32, 'a --backupable key backs up');
  await ok(t, 'keys', 'create', 'plain-cli', '--kind', 'aes-256');
  const refused = await cli('keys', 'backup', 'plain-cli', '--out', join(dir, 'plain.backup'));
  t.equal(refused.code, 1);
  t.match(refused.stderr, /OPERATION_NOT_ALLOWED/);

  t.equal((await h.keys.describe('plain-cli')).purgeProtection, false);
  await ok(t, 'keys', 'protect', 'plain-cli');
  t.equal((await h.keys.describe('plain-cli')).purgeProtection, true);
  await ok(t, 'keys', 'protect', 'plain-cli');
  await ok(t, 'keys', 'delete', 'plain-cli');
  const purge = await cli('keys', 'purge', 'plain-cli');
  t.equal(purge.code, 1, 'purge refused under protection');
  t.match(purge.stderr, /PURGE_PROTECTED/);
});

t.test('backup and restore from the CLI', async (t) => {
  await h.keys.initDomain();
  await h.keys.createKey({ name: 'bk', kind: 'aes-256', backupable: true });
  const out = join(dir, 'bk.backup');
  await ok(t, 'keys', 'backup', 'bk', '--out', out);
  t.ok(readFileSync(out).length > 32);
  await ok(t, 'keys', 'delete', 'bk');
  await ok(t, 'keys', 'purge', 'bk');
  await ok(t, 'keys', 'restore', out);
  t.equal((await h.keys.describe('bk')).origin, 'restored');
});
