// hsm.sessionObjectCopies on SoftHSM2: a session-object copy of a key is an object of its
// own, so a token key destroyed or disabled by other means than hyokd's own eviction keeps
// working through the copy until hyokd notices. Without copies the next use fails; with
// copies the token object is checked every sessionCopyRecheckMs (still there, same id,
// class and usage flags) and a copy that fails is dropped, so the change takes effect at
// the first use after the next check. (README, "The native engine".)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { NativeBackend } from '../../src/hsm/native-backend.js';
import type { KeyRef } from '../../src/hsm/types.js';
import { createTestToken } from '../helpers/softhsm.js';
import { typeScriptLoaders } from '../helpers/ts-child.js';

const tok = await createTestToken('copy-revocation');
t.teardown(() => tok.cleanup());

/** A token AES key, used once so that it is cached (and copied, with copies on). */
async function usedKey(h: NativeBackend, label: string) {
  const id = randomBytes(16);
  const { handle } = await h.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id, label, usage: { encrypt: true, decrypt: true } },
  });
  const key: KeyRef = { id, cls: 'secret' };
  const dek = randomBytes(32);
  const { iv, ciphertext } = await h.run({ op: 'encrypt', key, plaintext: dek });
  const decrypt = async () => (await h.run({ op: 'decrypt', key, iv, ciphertext })).plaintext;
  return { id, handle, key, dek, decrypt };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Longer than any test here: the copy is never re-checked. */
const NEVER = 3_600_000;
const RECHECK = 50;

/** Runs test/helpers/other-process.ts: another program on the token changes the key. */
function otherProcess(action: 'destroy' | 'disable', id: Buffer): Promise<void> {
  const script = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'helpers', 'other-process.ts');
  const child = spawn(process.execPath, [...typeScriptLoaders(), script, action, id.toString('hex')], {
    env: { ...process.env, HYOKD_TEST_TOKEN_LABEL: tok.label, HYOKD_TEST_PIN_FILE: tok.pinFile },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  return new Promise((resolve, reject) =>
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`other process: ${code} ${err}`)))),
  );
}

for (const copies of [false, true]) {
  t.test(`sessionObjectCopies ${copies}: a token key destroyed behind the cache`, async (t) => {
    const h = await tok.open({ sessions: 1, sessionObjectCopies: copies, sessionCopyRecheckMs: NEVER });
    t.teardown(() => h.close());
    const k = await usedKey(h, `destroyed-${copies}`);
    t.same(await k.decrypt(), k.dek, 'works before');
    // Destroy the token object directly: the key layer's evictKey is not called.
    await h.run({ op: 'destroy', handle: k.handle });
    // (find also sees session objects: with copies on, the copy carries the same CKA_ID)
    t.notOk((await h.run({ op: 'find', id: k.id })).handles.includes(k.handle), 'the token object is gone');
    if (copies) {
      t.same(await k.decrypt(), k.dek, 'the copy still decrypts until it is checked');
      await h.evictKey(k.key);
      await t.rejects(k.decrypt(), { code: 'HYOKD_KEY_NOT_FOUND' }, 'refused once hyokd drops the copy');
    } else {
      await t.rejects(k.decrypt(), { code: 'HYOKD_KEY_NOT_FOUND' }, 'refused at the next use');
    }
  });

  t.test(
    `sessionObjectCopies ${copies}: a token key disabled (CKA_DECRYPT false) behind the cache`,
    async (t) => {
      const h = await tok.open({ sessions: 1, sessionObjectCopies: copies, sessionCopyRecheckMs: NEVER });
      t.teardown(() => h.close());
      const k = await usedKey(h, `disabled-${copies}`);
      t.same(await k.decrypt(), k.dek, 'works before');
      await h.run({ op: 'setAttributes', handle: k.handle, attrs: { usage: { decrypt: false } } });
      if (copies) {
        t.same(await k.decrypt(), k.dek, 'the copy still decrypts until it is checked');
        await h.evictKey(k.key);
      }
      await t.rejects(
        k.decrypt(),
        { code: 'CKR_KEY_FUNCTION_NOT_PERMITTED' },
        'refused (once hyokd drops any copy)',
      );
    },
  );
}

t.test('with copies, a destroyed token key is refused at the first use after the recheck', async (t) => {
  const h = await tok.open({ sessions: 2, sessionObjectCopies: true, sessionCopyRecheckMs: RECHECK });
  t.teardown(() => h.close());
  const k = await usedKey(h, 'recheck-destroyed');
  await h.run({ op: 'destroy', handle: k.handle });
  await sleep(RECHECK + 20);
  await t.rejects(k.decrypt(), { code: 'HYOKD_KEY_NOT_FOUND' });
  t.equal(h.counters().sessionCopiesDropped, 1, 'one copy dropped');
  t.same((await h.run({ op: 'find', id: k.id })).handles, [], 'and destroyed: nothing left with that id');
});

t.test('with copies, a key disabled and enabled again follows the token key at each recheck', async (t) => {
  const h = await tok.open({ sessions: 2, sessionObjectCopies: true, sessionCopyRecheckMs: RECHECK });
  t.teardown(() => h.close());
  const k = await usedKey(h, 'recheck-disabled');
  await h.run({ op: 'setAttributes', handle: k.handle, attrs: { usage: { decrypt: false } } });
  await sleep(RECHECK + 20);
  await t.rejects(k.decrypt(), { code: 'CKR_KEY_FUNCTION_NOT_PERMITTED' }, 'disabled');
  await h.run({ op: 'setAttributes', handle: k.handle, attrs: { usage: { decrypt: true } } });
  await sleep(RECHECK + 20);
  t.same(await k.decrypt(), k.dek, 'enabled again: a new copy decrypts');
  t.equal(h.counters().sessionCopiesDropped, 2, 'the first copy and the disabled one dropped');
});

t.test('with copies, a token key given another CKA_ID is no longer that key', async (t) => {
  const h = await tok.open({ sessions: 1, sessionObjectCopies: true, sessionCopyRecheckMs: RECHECK });
  t.teardown(() => h.close());
  const k = await usedKey(h, 'recheck-renamed');
  await h.run({ op: 'setAttributes', handle: k.handle, attrs: { id: randomBytes(16) } });
  await sleep(RECHECK + 20);
  await t.rejects(k.decrypt(), { code: 'HYOKD_KEY_NOT_FOUND' });
  t.equal(h.counters().sessionCopiesDropped, 1);
});

t.test('with copies, an unchanged key keeps its copy across rechecks', async (t) => {
  const h = await tok.open({ sessions: 2, sessionObjectCopies: true, sessionCopyRecheckMs: 5 });
  t.teardown(() => h.close());
  const k = await usedKey(h, 'recheck-unchanged');
  const resolves = h.counters().handleResolves;
  // At least 150 ms (30 recheck intervals) and at least 5 rounds, with a pause between
  // rounds, so that several uses find their check due however slow the machine is.
  const until = Date.now() + 150;
  for (let n = 1; n <= 5 || Date.now() < until; n++) {
    const out = await Promise.all(Array.from({ length: 8 }, () => k.decrypt()));
    t.ok(
      out.every((p) => p.equals(k.dek)),
      `round ${n}`,
    );
    await sleep(6);
  }
  t.equal(h.counters().sessionCopiesDropped, 0, 'no copy dropped');
  t.equal(h.counters().handleResolves, resolves, 'the key was not looked up again');
});

for (const action of ['destroy', 'disable'] as const) {
  t.test(
    `with copies, another process's ${action} of the token key takes effect at the recheck`,
    async (t) => {
      const h = await tok.open({ sessions: 2, sessionObjectCopies: true, sessionCopyRecheckMs: RECHECK });
      t.teardown(() => h.close());
      const k = await usedKey(h, `other-process-${action}`);
      await otherProcess(action, k.id);
      await sleep(RECHECK + 20);
      await t.rejects(k.decrypt(), {
        code: action === 'destroy' ? 'HYOKD_KEY_NOT_FOUND' : 'CKR_KEY_FUNCTION_NOT_PERMITTED',
      });
      t.equal(h.counters().sessionCopiesDropped, 1);
    },
  );
}
