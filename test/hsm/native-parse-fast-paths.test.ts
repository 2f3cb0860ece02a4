// The addon's parse shortcuts must not change what an op means: a KeyRef object shared by
// the ops of a batch is parsed once (and a different one is still parsed and checked),
// strings are length-checked in bytes after a single copy, and caller-site stacks are
// opt-in (per backend or through NativeBackend.captureCallSites).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createTestToken } from '../helpers/softhsm.js';
import { NativeBackend } from '../../src/hsm/native-backend.js';
import { HsmError } from '../../src/hsm/errors.js';
import type { KeyRef, Op } from '../../src/hsm/types.js';

const tok = await createTestToken('parse-fast');
const hsm = await tok.open({ sessions: 2 });
t.teardown(async () => {
  await hsm.close();
  tok.cleanup();
});

const keyA: KeyRef = { id: Buffer.from('key-a'), cls: 'secret' };
const keyB: KeyRef = { id: Buffer.from('key-b'), cls: 'secret' };
for (const k of [keyA, keyB]) {
  await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id: k.id, label: 'k', usage: { encrypt: true, decrypt: true } },
  });
}

t.test('ops sharing one KeyRef object and ops alternating two keys each use their own key', async (t) => {
  const deks = Array.from({ length: 8 }, () => randomBytes(32));
  const keys = deks.map((_, i) => (i % 2 === 0 ? keyA : keyB));
  const enc = await hsm.batch(
    deks.map((d, i) => ({ op: 'encrypt', key: keys[i]!, plaintext: Buffer.from(d) })),
  );
  const sealed = enc.map((r) => {
    if (!r.ok) throw r.error;
    return r as unknown as { iv: Buffer; ciphertext: Buffer };
  });
  const dec = await hsm.batch(
    sealed.map((s, i) => ({ op: 'decrypt', key: keys[i]!, iv: s.iv, ciphertext: s.ciphertext })),
  );
  dec.forEach((r, i) => {
    t.ok(r.ok, `item ${i} decrypts`);
    if (r.ok) t.ok((r as unknown as { plaintext: Buffer }).plaintext.equals(deks[i]!), `item ${i} plaintext`);
  });
  // The same ciphertexts under the other key must fail: a reused parse would hide that.
  const swapped = await hsm.batch(
    sealed.map((s, i) => ({
      op: 'decrypt',
      key: i % 2 === 0 ? keyB : keyA,
      iv: s.iv,
      ciphertext: s.ciphertext,
    })),
  );
  swapped.forEach((r, i) => t.equal(r.ok, false, `item ${i} under the wrong key fails`));
});

t.test('a bad KeyRef after a good shared one is still refused, naming its item', async (t) => {
  const e = await hsm.run({ op: 'encrypt', key: keyA, plaintext: randomBytes(32) });
  const good: Op = { op: 'decrypt', key: keyA, iv: e.iv, ciphertext: e.ciphertext };
  const badKeys: Array<[string, unknown, string]> = [
    ['bad class', { id: Buffer.from('key-a'), cls: 'symmetric' }, 'TypeError'],
    ['empty id', { id: Buffer.alloc(0), cls: 'secret' }, 'TypeError'],
    ['id string', { id: 'key-a', cls: 'secret' }, 'TypeError'],
    ['token not boolean', { ...keyA, token: 'yes' }, 'TypeError'],
    ['not an object', 'key-a', 'TypeError'],
  ];
  for (const [name, key, kind] of badKeys) {
    const bad = { ...good, key } as unknown as Op;
    const err = await hsm.batch([good, good, bad, good]).catch((x: unknown) => x);
    t.equal((err as Error).constructor.name, kind, `${name}: ${String(err)}`);
    t.match(String((err as Error).message), /^op 2: /, `${name}: names the bad item`);
  }
  // A shared KeyRef that is bad is refused at its first use.
  const shared = { id: Buffer.from('key-a'), cls: 'nope' } as unknown as KeyRef;
  const err = await hsm
    .batch([{ op: 'random', length: 1 }, { ...good, key: shared } as Op, { ...good, key: shared } as Op])
    .catch((x: unknown) => x);
  t.ok(err instanceof TypeError);
  t.match(String((err as Error).message), /^op 1: /);
});

t.test('string limits are in UTF-8 bytes, including multi-byte characters at the edge', async (t) => {
  const find = (label: string) => hsm.run({ op: 'find', label });
  t.same((await find('é'.repeat(128))).handles, [], '256 bytes (128 two-byte characters) is accepted');
  t.same((await find('a'.repeat(256))).handles, [], '256 ASCII bytes is accepted');
  await t.rejects(find('é'.repeat(128) + 'a'), RangeError, '257 bytes is refused');
  await t.rejects(find('a'.repeat(255) + '€'), RangeError, '258 bytes ending in a 3-byte character');
  await t.rejects(find('a'.repeat(253) + '😀'), RangeError, '257 bytes ending in a 4-byte character');
  // The op name is limited to 32 bytes: longer is a RangeError, a 32-byte unknown name a TypeError.
  const opErr = async (name: string) =>
    (await hsm.batch([{ op: name } as unknown as Op]).catch((x: unknown) => x)) as Error;
  t.equal((await opErr('x'.repeat(32))).constructor.name, 'TypeError');
  t.equal((await opErr('x'.repeat(33))).constructor.name, 'RangeError');
  t.equal((await opErr('x'.repeat(31) + '€')).constructor.name, 'RangeError', '34 bytes in 32 characters');
  t.equal(
    (await opErr('x'.repeat(30) + '😀')).constructor.name,
    'RangeError',
    '34 bytes with a surrogate pair',
  );
});

t.test('captureCallSites: the submitting call shows in the stack only when asked', async (t) => {
  const missing: KeyRef = { id: Buffer.from('no-such-key'), cls: 'secret' };
  // Not awaited inside: only a captured call site can name this function.
  function submitWithoutAwait() {
    return hsm.run({ op: 'encrypt', key: missing, plaintext: Buffer.alloc(32) });
  }
  const plain = (await submitWithoutAwait().catch((e: unknown) => e)) as HsmError;
  t.ok(plain instanceof HsmError);
  t.equal(plain.code, 'HYOKD_KEY_NOT_FOUND');
  t.equal(plain.rv, -1);
  t.notMatch(plain.stack ?? '', /submitWithoutAwait/, 'off by default');

  NativeBackend.captureCallSites = true;
  t.teardown(() => {
    NativeBackend.captureCallSites = false;
  });
  const captured = (await submitWithoutAwait().catch((e: unknown) => e)) as HsmError;
  t.ok(captured instanceof HsmError);
  t.equal(captured.code, 'HYOKD_KEY_NOT_FOUND');
  t.match(captured.stack ?? '', /^HsmError: /);
  t.match(captured.stack ?? '', /submitWithoutAwait/, 'the static flag turns it on');

  const off = await tok.open({ sessions: 1, captureCallSites: false });
  t.teardown(() => off.close());
  const perBackend = (await off
    .run({ op: 'encrypt', key: missing, plaintext: Buffer.alloc(32) })
    .catch((e: unknown) => e)) as HsmError;
  t.ok(perBackend instanceof HsmError);
  t.equal(perBackend.code, 'HYOKD_KEY_NOT_FOUND');
});
