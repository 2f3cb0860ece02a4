// The data-folder lock of `hyokd serve`: one owner, stale locks taken over.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { lockHome } from '../../src/cli/home-lock.js';

const home = mkdtempSync(join(tmpdir(), 'hyokd-lock-'));
t.teardown(() => rmSync(home, { recursive: true, force: true }));

t.test('takes, refuses while held by a live process, releases', async (t) => {
  const lock = lockHome(home);
  t.equal(readFileSync(lock.path, 'utf8').trim(), String(process.pid));
  writeFileSync(lock.path, `${process.ppid}\n`); // pretend the parent (alive) holds it
  t.throws(() => lockHome(home), { message: new RegExp(`another hyokd \\(pid ${process.ppid}\\)`) });
  writeFileSync(lock.path, `${process.pid}\n`);
  lock.release();
  t.notOk(existsSync(lock.path));
  lock.release(); // idempotent
});

t.test('a lock left by a dead process or holding garbage is taken over', async (t) => {
  const dead = spawnSync(process.execPath, [
    '-e',
    'process.stdout.write(String(process.pid))',
  ]).stdout.toString();
  writeFileSync(join(home, 'hyokd.lock'), `${dead}\n`);
  const a = lockHome(home);
  t.equal(readFileSync(a.path, 'utf8').trim(), String(process.pid));
  a.release();
  writeFileSync(join(home, 'hyokd.lock'), 'not a pid');
  const b = lockHome(home);
  t.equal(readFileSync(b.path, 'utf8').trim(), String(process.pid));
  b.release();
});

t.test('release does not remove a lock another process took meanwhile', async (t) => {
  const lock = lockHome(home);
  writeFileSync(lock.path, `${process.ppid}\n`);
  lock.release();
  t.ok(existsSync(lock.path), 'the other owner keeps its lock');
  rmSync(lock.path);
});
