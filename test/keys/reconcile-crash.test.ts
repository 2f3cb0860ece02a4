// Crash safety for real: child processes create, rotate, purge and restore, and are
// SIGKILLed between the HSM step and the store commit. A restart's reconcile() leaves
// the store and the token consistent: generated objects that never reached the store are
// destroyed, the interrupted purge is finished, and nothing is left open.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestToken } from '../helpers/softhsm.js';
import { openSqliteStore } from '../../src/store/index.js';
import { KeyService } from '../../src/keys/key-service.js';
import { objectsWithId } from './helpers.js';

const child = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'crash-child.ts');
const tok = await createTestToken('crash');
const dataDir = mkdtempSync(join(tmpdir(), 'hyokd-crash-'));
const storePath = join(dataDir, 'metadata.sqlite');
const backupFile = join(dataDir, 'bk.backup');
t.teardown(() => {
  tok.cleanup();
  rmSync(dataDir, { recursive: true, force: true });
});

function run(
  step: string,
  crashAt?: string,
  arg?: string,
): Promise<{ code: number | null; signal: string | null; out: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.HYOKD_TEST_CRASH_AT;
    if (crashAt) env.HYOKD_TEST_CRASH_AT = crashAt;
    const p = spawn(
      process.execPath,
      [...process.execArgv, child, tok.dir, tok.label, storePath, step, ...(arg ? [arg] : [])],
      {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let errText = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (errText += d.toString()));
    p.on('error', reject);
    p.on('close', (code, signal) => {
      if (code !== 0 && signal === null) reject(new Error(`child ${step} failed: ${errText}`));
      else resolve({ code, signal, out });
    });
  });
}

t.test('SIGKILL between HSM step and store commit, then reconcile on restart', async (t) => {
  const setup = await run('setup', undefined, backupFile);
  t.equal(setup.out.trim(), 'done', 'setup ran to completion');
  for (const [step, arg] of [['create'], ['rotate'], ['purge'], ['restore', backupFile]] as const) {
    const r = await run(step, step, arg);
    t.equal(r.signal, 'SIGKILL', `${step}: killed between HSM step and store commit`);
    t.equal(r.out, '', `${step}: never reported success`);
  }

  const store = openSqliteStore({ path: storePath });
  const hsm = await tok.open({ sessions: 1 });
  t.teardown(async () => {
    await store.close();
    await hsm.close();
  });

  const intents = await store.listOpenIntents();
  t.same(
    intents.map((i) => i.kind),
    ['create', 'rotate', 'purge', 'restore'],
  );
  const byKind = Object.fromEntries(
    intents.map((i) => [i.kind, i.payload as { ckaId?: string; ckaIds?: string[] }]),
  );

  // Before reconcile: the token and the store disagree, as a crash leaves them.
  t.equal(await objectsWithId(hsm, byKind.create!.ckaId!), 2, 'the EC pair was generated');
  t.equal(await store.getKey('crash-create'), null, 'but never stored');
  t.equal(await objectsWithId(hsm, byKind.rotate!.ckaId!), 1, 'rotation object exists');
  t.equal((await store.listVersions('rot-me')).length, 1, 'but no version 2 in the store');
  const purgeIds = byKind.purge!.ckaIds!;
  t.equal(await objectsWithId(hsm, purgeIds[0]!), 0, 'purge destroyed the objects');
  t.equal((await store.getKey('purge-me'))?.state, 'soft-deleted', 'but the metadata remains');
  const restoreIds = byKind.restore!.ckaIds!;
  t.equal(restoreIds.length, 2);
  t.equal(await objectsWithId(hsm, restoreIds[0]!), 1, 'restore unwrapped its versions');
  t.equal(await store.getKey('bk'), null);

  const keys = new KeyService({ hsm, store });
  const actions = await keys.reconcile();
  t.same(
    actions.map((a) => [a.kind, a.action]),
    [
      ['create', 'rolled-back'],
      ['rotate', 'rolled-back'],
      ['purge', 'completed'],
      ['restore', 'rolled-back'],
    ],
  );

  t.equal(await objectsWithId(hsm, byKind.create!.ckaId!), 0, 'orphan pair destroyed');
  t.equal(await objectsWithId(hsm, byKind.rotate!.ckaId!), 0, 'orphan rotation key destroyed');
  t.equal(await store.getKey('purge-me'), null, 'purge completed');
  for (const id of restoreIds) t.equal(await objectsWithId(hsm, id), 0, 'restored objects destroyed');
  t.same(await store.listOpenIntents(), [], 'no intent left open');
  t.same(await keys.reconcile(), [], 'a second reconcile has nothing to do');

  // The survivors work, and the interrupted operations can simply be repeated.
  t.equal((await keys.forWrap('rot-me', 'wrapKey')).version, 1);
  t.equal((await keys.rotateKey('rot-me')).newVersion, 2);
  t.equal((await keys.createKey({ name: 'crash-create', kind: 'ec-p256' })).primaryVersion, 1);
  const { readFileSync } = await import('node:fs');
  t.equal((await keys.restoreKey(readFileSync(backupFile))).primaryVersion, 2);
});
