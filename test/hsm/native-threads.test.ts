// The addon's native threads carry names (top -H, ps -L, perf, /proc/<pid>/task/*/comm):
// one per HSM worker session, the pool's supervisor, and the audit write thread; and they
// run under SCHED_BATCH, so waking them does not preempt the event loop (helper_thread.h).
import { readdirSync, readFileSync } from 'node:fs';
import t from 'tap';
import { addon } from '../../src/hsm/native.js';
import { createTestToken } from '../helpers/softhsm.js';

function threadNames(): string[] {
  return threads().map((th) => th.name);
}

/** Linux's SCHED_BATCH (sched.h). */
const SCHED_BATCH = 3;

/** This process's threads: name and scheduling policy (field 41 of /proc/<pid>/task/<tid>/stat). */
function threads(): Array<{ tid: number; name: string; policy: number }> {
  const out: Array<{ tid: number; name: string; policy: number }> = [];
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      // Fields after the name, which is in parentheses and may hold anything: field 3 first.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push({ tid: Number(tid), name, policy: Number(rest[41 - 3]) });
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** The event loop's (the main thread's) policy. */
const loopPolicy = (): number | undefined => threads().find((th) => th.tid === process.pid)?.policy;
const loopBefore = loopPolicy();

const policyOf = (name: string): number[] =>
  threads()
    .filter((th) => th.name === name)
    .map((th) => th.policy);

const count = (names: string[], name: string): number => names.filter((n) => n === name).length;

/** Waits (up to 2 s) for `ok` to hold of the threads' names, then returns them: each thread names itself when it starts, and leaves /proc shortly after it is joined. */
async function namesWhen(ok: (names: string[]) => boolean): Promise<string[]> {
  for (let i = 0; i < 200 && !ok(threadNames()); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return threadNames();
}

t.test('HSM workers and the supervisor are named; the names go with the pool', async (t) => {
  const tok = await createTestToken('thread-names');
  t.teardown(() => tok.cleanup());
  const before = threadNames();
  t.equal(count(before, 'hyokd-hsm-sup'), 0, 'no pool yet');
  const h = await tok.open({ sessions: 3 });
  await h.run({ op: 'random', length: 16 });
  const want = ['hyokd-hsm-0', 'hyokd-hsm-1', 'hyokd-hsm-2', 'hyokd-hsm-sup'];
  const names = await namesWhen((ns) => want.every((n) => count(ns, n) > 0));
  for (const n of want) {
    t.equal(count(names, n), 1, n);
  }
  t.equal(count(names, 'hyokd-hsm-3'), 0, 'one name per session');
  for (const n of want) t.same(policyOf(n), [SCHED_BATCH], `${n} runs SCHED_BATCH`);
  t.equal(loopPolicy(), loopBefore, 'the event loop keeps the policy it started with');
  await h.close();
  const after = await namesWhen((ns) => !ns.some((n) => n.startsWith('hyokd-hsm-')));
  t.equal(after.filter((n) => n.startsWith('hyokd-hsm-')).length, 0, 'gone after close');
});

t.test('the audit write thread is named', async (t) => {
  const th = new (addon().AuditWriteThread)(() => {});
  t.teardown(() => th.close());
  t.equal(count(await namesWhen((ns) => ns.includes('hyokd-audit')), 'hyokd-audit'), 1);
  t.same(policyOf('hyokd-audit'), [SCHED_BATCH], 'runs SCHED_BATCH');
});
