// The daemon reads `quorum:` from its config file: with operations [PurgeKey] a purge
// over the admin API is held with QUORUM_REQUIRED (and stored as a pending request)
// while unlisted operations run. The embedded default binds a security domain on first
// run, so a backupable key backs up out of the box; a restart reuses that domain.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startDaemon, type Daemon } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/index.js';
import { silentLogger } from '../../src/log.js';
import { jsonLines, runCli, tempDir } from './client-harness.js';

const home = tempDir(t, 'hyokd-serve-quorum-');
writeFileSync(
  join(home, 'hyokd.yaml'),
  'quorum:\n  operations: [PurgeKey]\n  approvals: 3\n  ttlMs: 3600000\nmetrics:\n  enabled: false\n',
);
const configOf = () =>
  loadConfig({
    file: 'hyokd.yaml',
    env: { HYOKD_HOME: home, HYOKD_SERVER_LISTEN: '127.0.0.1:0' },
    cwd: home,
  });
let daemon: Daemon | undefined;
t.teardown(async () => {
  await daemon?.shutdown();
});

t.before(async () => {
  daemon = await startDaemon(configOf(), { log: silentLogger() });
});

const cli = (...argv: string[]) =>
  runCli([...argv, '--json'], { env: { HYOKD_HOME: home, HYOKD_ENDPOINT: daemon!.server.address } });

t.test('first run: the embedded default bound a security domain', async (t) => {
  const d = await daemon!.store.getDomain();
  t.ok(d, 'bound');
  t.ok(
    daemon!.banner.some((l) => l.includes(`security domain ${d!.domainId}`)),
    'the first-run message says so',
  );
  await cli('keys', 'create', 'bk', '--kind', 'aes-256', '--backupable');
  const b = await cli('keys', 'backup', 'bk', '--out', join(home, 'bk.backup'));
  t.equal(b.code, 0, b.stderr);
  t.equal((jsonLines(b.stdout).at(-1) as { securityDomain: string }).securityDomain, d!.domainId);
});

t.test('quorum.operations [PurgeKey]: purge is held, delete is not', async (t) => {
  t.same(daemon!.config.quorum, { operations: ['PurgeKey'], approvals: 3, ttlMs: 3_600_000 });
  const c = await cli('keys', 'create', 'q1', '--kind', 'aes-256');
  t.equal(c.code, 0, c.stderr);
  const del = await cli('keys', 'delete', 'q1');
  t.equal(del.code, 0, `delete is not listed: ${del.stderr}`);
  const p = await cli('keys', 'purge', 'q1');
  t.equal(p.code, 1);
  t.match(p.stderr, /QUORUM_REQUIRED/);
  const id = /quorumRequestId: (\S+)/.exec(p.stderr)?.[1];
  t.ok(id, 'the pending id is shown');
  const rec = await daemon!.store.getPendingRequest(id!);
  t.equal(rec?.op, 'PurgeKey');
  t.equal(rec?.keyName, 'q1');
  t.equal(rec?.state, 'pending');
  t.ok(rec!.expiresAt <= Date.now() + 3_600_000 && rec!.expiresAt > Date.now() + 3_500_000, 'ttlMs applied');
  t.equal((await daemon!.keys.describe('q1')).state, 'soft-deleted', 'not purged');
  t.same(daemon!.quorum.requirement('PurgeKey'), { required: true, approvals: 3 }, 'approvals applied');
  t.same(daemon!.quorum.requirement('DeleteKey'), { required: false, approvals: 0 });
});

t.test('a restart reuses the domain and keeps holding purges', async (t) => {
  const before = (await daemon!.store.getDomain())!.domainId;
  await daemon!.shutdown();
  daemon = await startDaemon(configOf(), { log: silentLogger() });
  t.equal((await daemon.store.getDomain())?.domainId, before, 'same domain');
  t.notOk(
    daemon.banner.some((l) => l.includes('security domain')),
    'nothing new to report',
  );
  const p = await cli('keys', 'purge', 'q1');
  t.match(p.stderr, /QUORUM_REQUIRED/);
});
