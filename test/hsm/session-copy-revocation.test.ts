// What hsm.sessionObjectCopies trades away, on SoftHSM2: a session-object copy of a key is
// an object of its own, so a token key destroyed by other means than hyokd's own eviction
// keeps working through the copy until hyokd drops it. Without copies the next use fails.
// (Why the option is off by default: README, "The native engine".)
import { randomBytes } from 'node:crypto';
import t from 'tap';
import type { NativeBackend } from '../../src/hsm/native-backend.js';
import type { KeyRef } from '../../src/hsm/types.js';
import { createTestToken } from '../helpers/softhsm.js';

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

for (const copies of [false, true]) {
  t.test(`sessionObjectCopies ${copies}: a token key destroyed behind the cache`, async (t) => {
    const h = await tok.open({ sessions: 1, sessionObjectCopies: copies });
    t.teardown(() => h.close());
    const k = await usedKey(h, `destroyed-${copies}`);
    t.same(await k.decrypt(), k.dek, 'works before');
    // Destroy the token object directly: the key layer's evictKey is not called.
    await h.run({ op: 'destroy', handle: k.handle });
    // (find also sees session objects: with copies on, the copy carries the same CKA_ID)
    t.notOk((await h.run({ op: 'find', id: k.id })).handles.includes(k.handle), 'the token object is gone');
    if (copies) {
      t.same(await k.decrypt(), k.dek, 'the copy still decrypts');
      await h.evictKey(k.key);
      await t.rejects(k.decrypt(), { code: 'HYOKD_KEY_NOT_FOUND' }, 'refused once hyokd drops the copy');
    } else {
      await t.rejects(k.decrypt(), { code: 'HYOKD_KEY_NOT_FOUND' }, 'refused at the next use');
    }
  });

  t.test(
    `sessionObjectCopies ${copies}: a token key disabled (CKA_DECRYPT false) behind the cache`,
    async (t) => {
      const h = await tok.open({ sessions: 1, sessionObjectCopies: copies });
      t.teardown(() => h.close());
      const k = await usedKey(h, `disabled-${copies}`);
      t.same(await k.decrypt(), k.dek, 'works before');
      await h.run({ op: 'setAttributes', handle: k.handle, attrs: { usage: { decrypt: false } } });
      if (copies) {
        t.same(await k.decrypt(), k.dek, 'the copy still decrypts');
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
