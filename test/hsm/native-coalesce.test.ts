// NativeBackend coalesces single-op calls made in one event-loop turn into native
// submissions (at the end of the turn, or as soon as coalesceMaxOps wait). Each caller
// must still get exactly its own result, its own error and its own stack, and a
// submission refused as a whole must not take the other callers down.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createTestToken } from '../helpers/softhsm.js';
import { NativeBackend } from '../../src/hsm/native-backend.js';
import { HsmError } from '../../src/hsm/errors.js';
import type { KeyRef } from '../../src/hsm/types.js';

const tok = await createTestToken('coalesce');
t.teardown(() => tok.cleanup());
const kek: KeyRef = { id: Buffer.from('kek'), cls: 'secret' };

/** Counts the native submissions (and their sizes, and timeouts into `timeouts`) behind the backend. */
function countSubmits(hsm: NativeBackend, timeouts: Array<number | undefined> = []): number[] {
  const holder = hsm as unknown as {
    raw: { submit: (ops: unknown[], timeoutMs?: number) => Promise<unknown> };
  };
  const raw = holder.raw;
  const sizes: number[] = [];
  holder.raw = new Proxy(raw, {
    get(target, prop) {
      if (prop === 'submit') {
        return (ops: unknown[], timeoutMs?: number) => {
          sizes.push(ops.length);
          timeouts.push(timeoutMs);
          return target.submit(ops, timeoutMs);
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return sizes;
}

async function open(
  opts: {
    queueCapacity?: number;
    sessions?: number;
    captureCallSites?: boolean;
    coalesceMaxOps?: number;
  } = {},
): Promise<NativeBackend> {
  const hsm = await tok.open({ sessions: 2, ...opts });
  const found = await hsm.run({ op: 'find', cls: 'secret', id: kek.id });
  if (found.handles.length === 0) {
    await hsm.run({
      op: 'generateKey',
      keyBits: 256,
      spec: { id: kek.id, label: 'kek', usage: { encrypt: true, decrypt: true } },
    });
  }
  return hsm;
}

t.test('single calls in one turn share submissions and each gets its own result', async (t) => {
  const hsm = await open();
  t.teardown(() => hsm.close());
  const deks = Array.from({ length: 100 }, () => randomBytes(32));
  const sizes = countSubmits(hsm);
  const enc = await Promise.all(
    deks.map((d) => hsm.run({ op: 'encrypt', key: kek, plaintext: Buffer.from(d) })),
  );
  const max = NativeBackend.DEFAULT_COALESCE_MAX_OPS;
  t.equal(sizes.length, Math.ceil(100 / max), `100 encrypts took ${sizes.length} submissions`);
  t.ok(
    sizes.every((n) => n <= max),
    `none above ${max}: ${sizes.join(',')}`,
  );
  t.equal(
    sizes.reduce((a, b) => a + b, 0),
    100,
  );
  const dec = await Promise.all(
    enc.map((e) => hsm.run({ op: 'decrypt', key: kek, iv: e.iv, ciphertext: e.ciphertext })),
  );
  dec.forEach((d, i) => t.ok(d.plaintext.equals(deks[i]!), `item ${i} got its own plaintext`));
});

t.test(
  'a submission leaves as soon as coalesceMaxOps ops wait, the rest at the end of the turn',
  async (t) => {
    const hsm = await open({ coalesceMaxOps: 4 });
    t.teardown(() => hsm.close());
    const sizes = countSubmits(hsm);
    const calls = Array.from({ length: 6 }, () => hsm.run({ op: 'random', length: 8 }));
    t.same(sizes, [4], 'the first 4 were submitted synchronously, within the turn');
    const results = await Promise.all(calls);
    t.same(sizes, [4, 2], 'the other 2 at the end of the turn');
    for (const r of results) t.equal(r.bytes.length, 8);
    await t.rejects(tok.open({ coalesceMaxOps: 0 }), RangeError);
  },
);

t.test('a failing item fails alone, with the stack of its own caller', async (t) => {
  // The synchronous call site is opt-in: capturing it costs a stack walk per call.
  const hsm = await open({ captureCallSites: true });
  t.teardown(() => hsm.close());
  const e = await hsm.run({ op: 'encrypt', key: kek, plaintext: randomBytes(32) });
  const bad = Buffer.from(e.ciphertext);
  bad[0] ^= 1;
  const good = () => hsm.run({ op: 'decrypt', key: kek, iv: e.iv, ciphertext: e.ciphertext });
  async function theFailingCaller() {
    return hsm.run({ op: 'decrypt', key: kek, iv: e.iv, ciphertext: bad });
  }
  const r = await Promise.allSettled([good(), theFailingCaller(), good()]);
  t.equal(r[0]!.status, 'fulfilled');
  t.equal(r[2]!.status, 'fulfilled');
  t.equal(r[1]!.status, 'rejected');
  const err = (r[1] as PromiseRejectedResult).reason as HsmError;
  t.ok(err instanceof HsmError);
  // SoftHSM2 reports a GCM tag failure as CKR_GENERAL_ERROR (see conformance.ts).
  t.match(err.code, /^CKR_(GENERAL_ERROR|ENCRYPTED_DATA_INVALID)$/);
  t.match(err.stack ?? '', /theFailingCaller/, 'the stack names the caller that submitted the op');
});

t.test(
  'without captureCallSites a failing item is still an HsmError naming its awaiting caller',
  async (t) => {
    const hsm = await open();
    t.teardown(() => hsm.close());
    const e = await hsm.run({ op: 'encrypt', key: kek, plaintext: randomBytes(32) });
    const bad = Buffer.from(e.ciphertext);
    bad[0] ^= 1;
    const good = () => hsm.run({ op: 'decrypt', key: kek, iv: e.iv, ciphertext: e.ciphertext });
    async function theAwaitingCaller() {
      return await hsm.run({ op: 'decrypt', key: kek, iv: e.iv, ciphertext: bad });
    }
    const r = await Promise.allSettled([good(), theAwaitingCaller(), good()]);
    t.same(
      r.map((x) => x.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    const err = (r[1] as PromiseRejectedResult).reason as HsmError;
    t.ok(err instanceof HsmError);
    t.match(err.code, /^CKR_(GENERAL_ERROR|ENCRYPTED_DATA_INVALID)$/);
    t.equal(err.op, 'decrypt');
    t.equal(err.retriable, false);
    t.match(err.stack ?? '', /theAwaitingCaller/, 'async stack traces reach the awaiting caller');
  },
);

t.test('an op the module refuses to parse is refused alone; the others still run', async (t) => {
  const hsm = await open();
  t.teardown(() => hsm.close());
  const e = await hsm.run({ op: 'encrypt', key: kek, plaintext: randomBytes(32) });
  const good = () => hsm.run({ op: 'decrypt', key: kek, iv: e.iv, ciphertext: e.ciphertext });
  const r = await Promise.allSettled([
    good(),
    hsm.run({ op: 'decrypt', key: kek, iv: Buffer.alloc(0), ciphertext: e.ciphertext }),
    good(),
  ]);
  t.same(
    r.map((x) => x.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
  t.ok((r[1] as PromiseRejectedResult).reason instanceof TypeError, 'the parse error of that op');
});

t.test('close timeouts share a submission under the smallest; distant ones do not', async (t) => {
  // 22 ops in one turn: above the default size trigger, which this test is not about.
  const hsm = await open({ coalesceMaxOps: 64 });
  t.teardown(() => hsm.close());
  const timeouts: Array<number | undefined> = [];
  const sizes = countSubmits(hsm, timeouts);
  const random = (timeoutMs: number) => hsm.run({ op: 'random', length: 8 }, { timeoutMs });
  // Deadlines as clients send them: 1000..1099 ms (within 10% + 10 ms of 1000), then 2000 and 2001.
  const results = await Promise.all([
    ...Array.from({ length: 20 }, (_, i) => random(1000 + i * 5)),
    random(2001),
    random(2000),
  ]);
  t.equal(results.length, 22);
  for (const r of results) t.equal(r.bytes.length, 8);
  t.same([...sizes].sort(), [2, 20], 'two submissions: the 20 close ones and the 2 distant ones');
  t.same([...timeouts].sort(), [1000, 2000], 'each runs under its smallest timeout');
  await Promise.all([random(1000), random(1111)]);
  t.same(sizes.slice(2), [1, 1], '1111 ms is more than 10% + 10 ms above 1000 ms: alone');
});

t.test('a full queue answers each caller as if it had submitted alone', async (t) => {
  const hsm = await open({ sessions: 1, queueCapacity: 4 });
  t.teardown(() => hsm.close());
  const r = await Promise.allSettled(Array.from({ length: 40 }, () => hsm.run({ op: 'random', length: 16 })));
  const ok = r.filter((x) => x.status === 'fulfilled').length;
  const codes = new Set(
    r
      .filter((x) => x.status === 'rejected')
      .map((x) => ((x as PromiseRejectedResult).reason as HsmError).code),
  );
  // All 40 in one submission would exceed the capacity of 4 and be refused as a whole.
  t.ok(ok >= 1, `${ok} calls got through (resubmitted alone after the combined refusal)`);
  t.ok(
    codes.size === 0 || (codes.size === 1 && codes.has('HYOKD_QUEUE_FULL')),
    'the only refusal is QUEUE_FULL',
  );
});

t.test('after close, pending single calls are refused, not lost', async (t) => {
  const hsm = await open();
  const p = Promise.allSettled([hsm.run({ op: 'random', length: 8 }), hsm.run({ op: 'random', length: 8 })]);
  await hsm.close();
  const r = await p;
  for (const x of r) {
    if (x.status === 'rejected') t.equal((x.reason as HsmError).code, 'HYOKD_CLOSED');
    else t.equal(x.value.bytes.length, 8);
  }
  await t.rejects(hsm.run({ op: 'random', length: 8 }), { code: 'HYOKD_CLOSED' });
});
