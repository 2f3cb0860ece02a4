import { randomBytes } from 'node:crypto';
import t from 'tap';
import { HsmError } from '../../src/hsm/errors.js';
import { FakeHsmBackend, createFakeBackend } from '../../src/hsm/fake-backend.js';
import type { ObjectSpec } from '../../src/hsm/types.js';
import { hsmConformance, isDecryptFailure } from './conformance.js';

const spec = (usage: ObjectSpec['usage'], extra: Partial<ObjectSpec> = {}): ObjectSpec => ({
  id: randomBytes(8),
  label: 'k-' + randomBytes(4).toString('hex'),
  token: true,
  usage,
  ...extra,
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'no error';
  } catch (e) {
    return e instanceof HsmError ? e.code : `not an HsmError: ${String(e)}`;
  }
}

t.test('conformance: fake backend', (t) => hsmConformance(t, () => createFakeBackend()));

t.test('conformance: fake backend with optional mechanisms off', (t) =>
  hsmConformance(t, () =>
    createFakeBackend({
      capabilities: { oaepSha256: false, rsaAesKeyWrap: false, aesKeyWrapPad: false, sessionCopy: false },
    }),
  ),
);

t.test('GCM tag failure is CKR_ENCRYPTED_DATA_INVALID (the spec code)', async (t) => {
  const hsm = new FakeHsmBackend();
  t.teardown(() => hsm.close());
  const s = spec({ encrypt: true, decrypt: true });
  await hsm.run({ op: 'generateKey', keyBits: 256, spec: s });
  const key = { id: s.id, cls: 'secret' as const };
  const e = await hsm.run({ op: 'encrypt', key, plaintext: randomBytes(32) });
  e.ciphertext[0]! ^= 1;
  try {
    await hsm.run({ op: 'decrypt', key, iv: e.iv, ciphertext: e.ciphertext });
    t.fail('decrypted');
  } catch (err) {
    t.ok(err instanceof HsmError);
    t.equal((err as HsmError).code, 'CKR_ENCRYPTED_DATA_INVALID');
    t.equal((err as HsmError).rv, 0x40);
    t.equal((err as HsmError).retriable, false);
    t.equal((err as HsmError).op, 'decrypt');
  }
  t.equal(hsm.counters().errors['CKR_ENCRYPTED_DATA_INVALID'], 1, 'counted by code');
});

t.test('bounded queue refuses with HYOKD_QUEUE_FULL', async (t) => {
  const hsm = new FakeHsmBackend({ queueCapacity: 3, workers: 1 });
  t.teardown(() => hsm.close());
  hsm.pause();
  const queued = [1, 2, 3].map(() => hsm.run({ op: 'random', length: 4 }));
  t.equal(hsm.counters().queueDepth, 3);
  const err = await hsm.run({ op: 'random', length: 4 }).catch((e: unknown) => e);
  t.ok(err instanceof HsmError);
  t.equal((err as HsmError).code, 'HYOKD_QUEUE_FULL');
  t.equal((err as HsmError).retriable, true);
  t.equal((err as HsmError).rv, -1);
  t.equal(
    await codeOf(hsm.batch([{ op: 'random', length: 1 }])),
    'HYOKD_QUEUE_FULL',
    'a batch is refused whole',
  );
  t.equal(hsm.counters().rejectedQueueFull, 2);
  hsm.resume();
  const done = await Promise.all(queued);
  t.same(
    done.map((d) => d.bytes.length),
    [4, 4, 4],
    'queued work completes after resume',
  );
  t.equal(hsm.counters().queueDepth, 0);
  const big = new FakeHsmBackend({ queueCapacity: 2 });
  t.teardown(() => big.close());
  big.pause();
  t.equal(
    await codeOf(big.batch([1, 2, 3].map(() => ({ op: 'random' as const, length: 1 })))),
    'HYOKD_QUEUE_FULL',
    'a batch larger than the queue',
  );
  big.resume();
});

t.test('fault injection', async (t) => {
  const hsm = new FakeHsmBackend();
  t.teardown(() => hsm.close());
  hsm.injectFault('CKR_DEVICE_ERROR', 2);
  const e1 = await hsm.run({ op: 'random', length: 1 }).catch((e: unknown) => e as HsmError);
  t.equal((e1 as HsmError).code, 'CKR_DEVICE_ERROR');
  t.equal((e1 as HsmError).retriable, true, 'device errors are retriable');
  t.equal((e1 as HsmError).rv, 0x30);
  const results = await hsm.batch([
    { op: 'random', length: 1 },
    { op: 'random', length: 2 },
  ]);
  t.same(
    results.map((r) => r.ok),
    [false, true],
    'the fault applies per item and runs out',
  );
  t.equal((await hsm.run({ op: 'random', length: 3 })).bytes.length, 3, 'then ops succeed');

  hsm.injectFault('CKR_GENERAL_ERROR', 1, { op: 'decrypt' });
  t.equal(
    (await hsm.run({ op: 'random', length: 1 })).bytes.length,
    1,
    'an op-specific fault skips other ops',
  );
  const s = spec({ encrypt: true, decrypt: true });
  await hsm.run({ op: 'generateKey', keyBits: 256, spec: s });
  const key = { id: s.id, cls: 'secret' as const };
  const e = await hsm.run({ op: 'encrypt', key, plaintext: Buffer.from('x') });
  const code = await codeOf(hsm.run({ op: 'decrypt', key, iv: e.iv, ciphertext: e.ciphertext }));
  t.equal(code, 'CKR_GENERAL_ERROR', 'injected into decrypt');
  t.ok(isDecryptFailure(code));
  t.same(
    (await hsm.run({ op: 'decrypt', key, iv: e.iv, ciphertext: e.ciphertext })).plaintext,
    Buffer.from('x'),
  );

  hsm.injectFault('HYOKD_HSM_UNAVAILABLE', 1, { retriable: false });
  const e3 = await hsm.run({ op: 'random', length: 1 }).catch((x: unknown) => x as HsmError);
  t.equal((e3 as HsmError).retriable, false, 'retriable can be overridden');
  const c = hsm.counters();
  t.equal(c.errors['CKR_DEVICE_ERROR'], 2);
  t.equal(c.errors['CKR_GENERAL_ERROR'], 1);
  t.ok((c.ops['random'] ?? 0) >= 3);
});

t.test('unwrapping private keys (PKCS#8) with AES key wrap with padding', async (t) => {
  const hsm = new FakeHsmBackend();
  t.teardown(() => hsm.close());
  const w = spec({ wrap: true, unwrap: true });
  await hsm.run({ op: 'generateKey', keyBits: 256, spec: w });
  const pub = spec({ verify: true });
  const priv = spec({ sign: true }, { extractable: true });
  await hsm.run({ op: 'generateKeyPair', kind: 'ec', publicSpec: pub, privateSpec: priv });
  const { wrapped } = await hsm.run({
    op: 'wrapKey',
    mechanism: 'AES_KEY_WRAP_PAD',
    wrappingKey: { id: w.id, cls: 'secret' },
    key: { id: priv.id, cls: 'private' },
  });
  const target = spec({ sign: true });
  const { handle } = await hsm.run({
    op: 'unwrapKey',
    mechanism: 'AES_KEY_WRAP_PAD',
    unwrappingKey: { id: w.id, cls: 'secret' },
    wrapped,
    keyType: 'ec',
    spec: target,
  });
  const attrs = (await hsm.run({ op: 'getAttributes', handle })).attrs;
  t.equal(attrs.cls, 'private');
  t.equal(attrs.local, false, 'an unwrapped key is not local');
  t.equal(attrs.alwaysSensitive, false);
  const digest = randomBytes(32);
  const { signature } = await hsm.run({
    op: 'sign',
    key: { id: target.id, cls: 'private' },
    mechanism: 'ECDSA',
    data: digest,
  });
  t.same(
    await hsm.run({
      op: 'verify',
      key: { id: pub.id, cls: 'public' },
      mechanism: 'ECDSA',
      data: digest,
      signature,
    }),
    { valid: true },
  );
  t.equal(
    await codeOf(
      hsm.run({
        op: 'unwrapKey',
        mechanism: 'AES_KEY_WRAP_PAD',
        unwrappingKey: { id: w.id, cls: 'secret' },
        wrapped,
        keyType: 'rsa',
        spec: spec({}),
      }),
    ),
    'CKR_WRAPPED_KEY_INVALID',
    'declared key type must match',
  );
});

t.test('capabilities are enforced', async (t) => {
  const hsm = new FakeHsmBackend({ capabilities: { oaepSha256: false, aesKeyWrapPad: false } });
  t.teardown(() => hsm.close());
  t.match(await hsm.capabilities(), { oaepSha256: false, aesKeyWrapPad: false, oaepSha1: true });
  t.notOk(
    hsm.mechanisms().some((m) => m.name === 'CKM_AES_KEY_WRAP_PAD'),
    'mechanism list follows',
  );
  const pub = spec({ encrypt: true });
  await hsm.run({
    op: 'generateKeyPair',
    kind: 'rsa',
    modulusBits: 2048,
    publicSpec: pub,
    privateSpec: spec({ decrypt: true }),
  });
  t.equal(
    await codeOf(
      hsm.run({
        op: 'rsaEncrypt',
        key: { id: pub.id, cls: 'public' },
        hash: 'sha256',
        data: Buffer.from('x'),
      }),
    ),
    'CKR_ARGUMENTS_BAD',
    'OAEP SHA-256 refused like SoftHSM2',
  );
});

t.test('bad arguments', async (t) => {
  const hsm = new FakeHsmBackend();
  t.teardown(() => hsm.close());
  t.equal(await codeOf(hsm.run({ op: 'random', length: -1 })), 'CKR_ARGUMENTS_BAD');
  t.equal(
    await codeOf(hsm.run({ op: 'generateKey', keyBits: 100 as 128, spec: spec({}) })),
    'CKR_ATTRIBUTE_VALUE_INVALID',
  );
  const s = spec({ encrypt: true, decrypt: true });
  await hsm.run({ op: 'generateKey', keyBits: 256, spec: s });
  const key = { id: s.id, cls: 'secret' as const };
  t.equal(
    await codeOf(hsm.run({ op: 'encrypt', key, plaintext: Buffer.from('x'), iv: Buffer.alloc(8) })),
    'CKR_MECHANISM_PARAM_INVALID',
  );
  t.equal(
    await codeOf(hsm.run({ op: 'decrypt', key, iv: Buffer.alloc(12), ciphertext: Buffer.alloc(5) })),
    'CKR_ENCRYPTED_DATA_LEN_RANGE',
  );
  t.equal(await codeOf(hsm.run({ op: 'nope' } as never)), 'HYOKD_UNSUPPORTED');
});

t.test('close drains, then refuses', async (t) => {
  const hsm = new FakeHsmBackend({ workers: 1 });
  const pending = [1, 2, 3].map((n) => hsm.run({ op: 'random', length: n }));
  t.ok(hsm.objectCount() === 0);
  await hsm.close();
  t.same(
    (await Promise.all(pending)).map((r) => r.bytes.length),
    [1, 2, 3],
    'in-flight work finished',
  );
  t.equal(hsm.state(), 'closed');
  t.equal(await codeOf(hsm.run({ op: 'random', length: 1 })), 'HYOKD_CLOSED');
  t.equal(await codeOf(hsm.batch([{ op: 'random', length: 1 }])), 'HYOKD_CLOSED');
  await t.resolves(hsm.close(), 'close is idempotent');
  t.equal(hsm.state(), 'closed', 'and the backend stays closed');
});

t.test('KeyRef.token selects token or session objects; duplicates are ambiguous', async (t) => {
  const hsm = new FakeHsmBackend();
  t.teardown(() => hsm.close());
  const id = randomBytes(8);
  await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id, label: 's', token: false, usage: { encrypt: true } },
  });
  t.equal(
    await codeOf(hsm.run({ op: 'encrypt', key: { id, cls: 'secret' }, plaintext: Buffer.from('x') })),
    'HYOKD_KEY_NOT_FOUND',
    'default: token objects only',
  );
  const e = await hsm.run({
    op: 'encrypt',
    key: { id, cls: 'secret', token: false },
    plaintext: Buffer.from('x'),
  });
  t.equal(e.ciphertext.length, 17, 'token: false finds the session object');
  await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id, label: 's2', token: false, usage: { encrypt: true } },
  });
  await hsm.evictKey({ id, cls: 'secret', token: false });
  t.equal(
    await codeOf(
      hsm.run({ op: 'encrypt', key: { id, cls: 'secret', token: false }, plaintext: Buffer.from('x') }),
    ),
    'HYOKD_KEY_AMBIGUOUS',
    'two keys with one id and class',
  );
  const before = hsm.counters().handleResolves;
  t.ok(before >= 3, 'resolves are counted');
});

t.test('timeoutMs: items not started in time fail with HYOKD_DEADLINE_EXCEEDED', async (t) => {
  const hsm = new FakeHsmBackend({ workers: 1 });
  t.teardown(() => hsm.close());
  hsm.pause();
  const late = hsm.run({ op: 'random', length: 1 }, { timeoutMs: 5 });
  const batch = hsm.batch([{ op: 'random', length: 1 }], { timeoutMs: 5 });
  const patient = hsm.run({ op: 'random', length: 2 });
  await new Promise((r) => setTimeout(r, 30));
  hsm.resume();
  t.equal(await codeOf(late), 'HYOKD_DEADLINE_EXCEEDED');
  const [item] = await batch;
  t.equal(item && !item.ok ? item.error.code : 'ok', 'HYOKD_DEADLINE_EXCEEDED', 'per item in a batch');
  t.equal((await patient).bytes.length, 2, 'no timeout, no failure');
  t.equal((await hsm.run({ op: 'random', length: 3 }, { timeoutMs: 1000 })).bytes.length, 3, 'in time');
});
