// The engine under load: many concurrent mixed operations, a token that drops every
// session mid-flight, a full queue, and close() with work in flight.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createTestToken } from '../helpers/softhsm.js';
import type { HsmBackend, ItemResult, KeyRef, Op } from '../../src/hsm/types.js';
import { HsmError } from '../../src/hsm/errors.js';

const tok = await createTestToken('load');
t.teardown(() => tok.cleanup());

const kekId = Buffer.from('kek');
const kek: KeyRef = { id: kekId, cls: 'secret' };
const ecId = Buffer.from('ec');

async function setup(hsm: HsmBackend): Promise<void> {
  const found = await hsm.run({ op: 'find', cls: 'secret', id: kekId });
  if (found.handles.length) return;
  await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id: kekId, label: 'kek', usage: { encrypt: true, decrypt: true } },
  });
  await hsm.run({
    op: 'generateKeyPair',
    kind: 'ec',
    publicSpec: { id: ecId, label: 'ec', usage: { verify: true } },
    privateSpec: { id: ecId, label: 'ec', usage: { sign: true } },
  });
}

interface Sample {
  dek: Buffer;
  aad: Buffer;
  iv: Buffer;
  ciphertext: Buffer;
}

/** Decrypts of every sample, `rounds` times over: a batch long enough to queue. */
function decrypts(pool: Sample[], rounds: number): Op[] {
  const ops: Op[] = [];
  for (let i = 0; i < rounds; i++)
    for (const s of pool)
      ops.push({ op: 'decrypt', key: kek, iv: s.iv, ciphertext: s.ciphertext, aad: s.aad });
  return ops;
}

async function samples(hsm: HsmBackend, n: number): Promise<Sample[]> {
  const out: Sample[] = [];
  const ops: Op[] = [];
  const plain: Array<{ dek: Buffer; aad: Buffer }> = [];
  for (let i = 0; i < n; i++) {
    const dek = randomBytes(32);
    const aad = randomBytes(8);
    plain.push({ dek, aad });
    ops.push({ op: 'encrypt', key: kek, plaintext: Buffer.from(dek), aad });
  }
  const res = await hsm.batch(ops);
  res.forEach((r, i) => {
    if (!r.ok) throw r.error;
    const v = r as unknown as { iv: Buffer; ciphertext: Buffer };
    out.push({ ...plain[i], iv: v.iv, ciphertext: v.ciphertext });
  });
  return out;
}

t.test('20,000 mixed operations submitted concurrently all return correct results', async (t) => {
  const hsm = await tok.open({ sessions: 2, queueCapacity: 30000 });
  t.teardown(() => hsm.close());
  await setup(hsm);
  const pool = await samples(hsm, 200);
  const digest = randomBytes(32);
  const { signature } = await hsm.run({
    op: 'sign',
    key: { id: ecId, cls: 'private' },
    mechanism: 'ECDSA',
    data: digest,
  });
  const pending: Array<Promise<boolean>> = [];
  let submitted = 0;
  let chained = 0; // encrypt-then-decrypt singles: two HSM operations each
  const opsBefore = Object.values(hsm.counters().ops).reduce((a, b) => a + b, 0);
  // Half as single calls, half as batches of 50, of four kinds, all in flight at once.
  while (submitted < 20000) {
    const i = submitted;
    const s = pool[i % pool.length];
    if (i % 2 === 0) {
      const kind = (i >> 1) % 4;
      if (kind === 0) {
        pending.push(
          hsm
            .run({ op: 'decrypt', key: kek, iv: s.iv, ciphertext: s.ciphertext, aad: s.aad })
            .then((r) => r.plaintext.equals(s.dek)),
        );
      } else if (kind === 1) {
        chained++;
        pending.push(
          hsm
            .run({ op: 'encrypt', key: kek, plaintext: Buffer.from(s.dek), aad: s.aad })
            .then((e) => hsm.run({ op: 'decrypt', key: kek, iv: e.iv, ciphertext: e.ciphertext, aad: s.aad }))
            .then((r) => r.plaintext.equals(s.dek)),
        );
      } else if (kind === 2) {
        pending.push(hsm.run({ op: 'random', length: 16 }).then((r) => r.bytes.length === 16));
      } else {
        pending.push(
          hsm
            .run({
              op: 'verify',
              key: { id: ecId, cls: 'public' },
              mechanism: 'ECDSA',
              data: digest,
              signature,
            })
            .then((r) => r.valid),
        );
      }
      submitted++;
    } else {
      const items = Array.from({ length: 50 }, (_, k) => pool[(i + k) % pool.length]);
      const ops: Op[] = items.map((x) => ({
        op: 'decrypt',
        key: kek,
        iv: x.iv,
        ciphertext: x.ciphertext,
        aad: x.aad,
      }));
      pending.push(
        hsm
          .batch(ops)
          .then((rs: ItemResult[]) =>
            rs.every(
              (r, k) => r.ok && (r as unknown as { plaintext: Buffer }).plaintext.equals(items[k].dek),
            ),
          ),
      );
      submitted += 50;
    }
  }
  const results = await Promise.all(pending);
  t.equal(results.filter((x) => !x).length, 0, 'every result correct');
  const c = hsm.counters();
  const opsDone = Object.values(c.ops).reduce((a, b) => a + b, 0) - opsBefore;
  t.ok(submitted >= 20000, `${submitted} operations submitted`);
  t.equal(opsDone, submitted + chained, 'the engine completed exactly the operations submitted');
  t.equal(c.queueDepth, 0);
  t.equal(c.sessionsBusy, 0);
});

t.test('closing every session under load recovers; only retriable failures', async (t) => {
  const hsm = await tok.open({ sessions: 2, queueCapacity: 100000 });
  t.teardown(() => hsm.close());
  await setup(hsm);
  const pool = await samples(hsm, 100);
  let ok = 0;
  const failures: HsmError[] = [];
  const waves: Array<Promise<void>> = [];
  for (let w = 0; w < 40; w++) {
    const ops: Op[] = pool.map((s) => ({
      op: 'decrypt',
      key: kek,
      iv: s.iv,
      ciphertext: s.ciphertext,
      aad: s.aad,
    }));
    waves.push(
      hsm.batch(ops).then((rs) =>
        rs.forEach((r, k) => {
          if (r.ok && (r as unknown as { plaintext: Buffer }).plaintext.equals(pool[k].dek)) ok++;
          else if (!r.ok) failures.push(r.error);
        }),
      ),
    );
    if (w === 10 || w === 25) {
      await new Promise((r) => setImmediate(r));
      hsm.testCloseAllSessions();
    }
  }
  await Promise.all(waves);
  t.ok(ok > 0);
  t.same(
    failures.filter((f) => !f.retriable).map((f) => f.code),
    [],
    'no non-retriable failure',
  );
  t.equal(ok + failures.length, 4000);
  const c = hsm.counters();
  t.ok(c.sessionReopens > 0, 'sessions were reopened');
  t.ok(c.relogins > 0, 'the login was restored');
  // And it keeps working afterwards, every item.
  const after = await hsm.batch(
    pool.map((s) => ({ op: 'decrypt', key: kek, iv: s.iv, ciphertext: s.ciphertext, aad: s.aad })),
  );
  t.ok(after.every((r) => r.ok));
});

t.test('device errors re-initialize the module; callers see retriable errors meanwhile', async (t) => {
  const hsm = await tok.open({ sessions: 2 });
  t.teardown(() => hsm.close());
  await setup(hsm);
  const [s] = await samples(hsm, 1);
  hsm.injectFault('CKR_DEVICE_ERROR', 1);
  const err = await hsm
    .run({ op: 'decrypt', key: kek, iv: s.iv, ciphertext: s.ciphertext, aad: s.aad })
    .catch((e: unknown) => e);
  t.ok(err instanceof HsmError);
  t.equal((err as HsmError).code, 'CKR_DEVICE_ERROR');
  t.equal((err as HsmError).retriable, true);
  // Recovery runs on the supervisor thread; wait for it.
  const start = Date.now();
  while (hsm.counters().reinitializations === 0 && Date.now() - start < 10000) {
    await new Promise((r) => setTimeout(r, 20));
  }
  t.equal(hsm.counters().reinitializations, 1);
  t.equal(hsm.state(), 'ready');
  const r = await hsm.run({ op: 'decrypt', key: kek, iv: s.iv, ciphertext: s.ciphertext, aad: s.aad });
  t.same(r.plaintext, s.dek, 'works again after re-initialization');
});

t.test('a full queue refuses fast with HYOKD_QUEUE_FULL and memory stays bounded', async (t) => {
  const hsm = await tok.open({ sessions: 1, queueCapacity: 64 });
  t.teardown(() => hsm.close());
  await setup(hsm);
  const pool = await samples(hsm, 64);
  const ops: Op[] = pool.map((s) => ({
    op: 'decrypt',
    key: kek,
    iv: s.iv,
    ciphertext: s.ciphertext,
    aad: s.aad,
  }));
  // Twenty full batches back to back: the one worker drains ~64 items a millisecond, so
  // some must find the queue full (two alone can race it when the JS thread is descheduled
  // between them on a busy machine).
  const outcomes = await Promise.all(
    Array.from({ length: 20 }, () =>
      hsm.batch(ops).then(
        (r) => ({ accepted: r }),
        (e: unknown) => ({ refused: e }),
      ),
    ),
  );
  const refused = outcomes.flatMap((o) => ('refused' in o ? [o.refused] : []));
  const accepted = outcomes.flatMap((o) => ('accepted' in o ? [o.accepted] : []));
  t.comment(`${refused.length} of 20 refused`, JSON.stringify(hsm.counters()));
  t.ok(refused.length >= 1, 'some batches were refused');
  t.ok(accepted.length >= 1, 'the first batch was accepted');
  for (const e of refused) {
    t.ok(e instanceof HsmError);
    t.equal((e as HsmError).code, 'HYOKD_QUEUE_FULL');
    t.equal((e as HsmError).retriable, true);
  }
  t.ok(
    accepted.every((r) => r.every((x) => x.ok)),
    'every accepted item succeeded',
  );
  t.equal(hsm.counters().rejectedQueueFull, refused.length);
  t.ok(hsm.counters().queueDepth <= 64);
});

t.test('items past their deadline are not started', async (t) => {
  const hsm = await tok.open({ sessions: 1, queueCapacity: 10000 });
  t.teardown(() => hsm.close());
  await setup(hsm);
  const pool = await samples(hsm, 100);
  const ops = decrypts(pool, 40);
  const res = await hsm.batch(ops, { timeoutMs: 1 });
  const late = res.filter((r) => !r.ok && r.error.code === 'HYOKD_DEADLINE_EXCEEDED');
  t.ok(late.length > 0, `${late.length} of ${res.length} refused after the deadline`);
  t.ok(res.every((r) => r.ok || r.error.code === 'HYOKD_DEADLINE_EXCEEDED'));
});

t.test('the configured op timeout bounds a longer caller deadline', async (t) => {
  // Samples on a roomy backend (token objects: they outlive it), and the caller's shorter
  // deadline still applying under a longer configured bound.
  const roomy = await tok.open({ sessions: 1, queueCapacity: 10000, opTimeoutMs: 60_000 });
  await setup(roomy);
  const pool = await samples(roomy, 100);
  const ops = decrypts(pool, 40);
  const shortened = await roomy.batch(ops, { timeoutMs: 1 });
  t.ok(
    shortened.some((r) => !r.ok && r.error.code === 'HYOKD_DEADLINE_EXCEEDED'),
    'a 1 ms caller deadline applies under a 60 s bound',
  );
  await roomy.close();

  const hsm = await tok.open({ sessions: 1, queueCapacity: 10000, opTimeoutMs: 1 });
  t.teardown(() => hsm.close());
  const res = await hsm.batch(ops, { timeoutMs: 60_000 });
  const late = res.filter((r) => !r.ok && r.error.code === 'HYOKD_DEADLINE_EXCEEDED');
  t.ok(late.length > 0, `${late.length} of ${res.length} refused after 1 ms despite a 60 s deadline`);
  t.ok(res.every((r) => r.ok || r.error.code === 'HYOKD_DEADLINE_EXCEEDED'));
});

t.test('close() with work in flight drains, neither hangs nor crashes', async (t) => {
  const hsm = await tok.open({ sessions: 2, queueCapacity: 10000 });
  await setup(hsm);
  const pool = await samples(hsm, 100);
  const inflight: Array<Promise<ItemResult[]>> = [];
  for (let i = 0; i < 30; i++) {
    inflight.push(
      hsm.batch(
        pool.map((s) => ({ op: 'decrypt', key: kek, iv: s.iv, ciphertext: s.ciphertext, aad: s.aad })),
      ),
    );
  }
  const closing = hsm.close();
  const after = await hsm.batch([{ op: 'random', length: 4 }]).catch((e: unknown) => e);
  t.ok(after instanceof HsmError);
  t.equal((after as HsmError).code, 'HYOKD_CLOSED');
  await closing;
  const done = await Promise.all(inflight);
  t.equal(done.flat().filter((r) => r.ok).length, 3000, 'everything submitted before close() completed');
  t.equal(hsm.state(), 'closed');
  await t.resolves(hsm.close(), 'a second close resolves');
  t.equal(hsm.state(), 'closed', 'and changes nothing');
});

t.test('session-object copies of hot keys: used, and destroyed on evict', async (t) => {
  const hsm = await tok.open({ sessions: 2, sessionObjectCopies: true });
  t.teardown(() => hsm.close());
  await setup(hsm);
  const [s] = await samples(hsm, 1);
  const r = await hsm.run({ op: 'decrypt', key: kek, iv: s.iv, ciphertext: s.ciphertext, aad: s.aad });
  t.same(r.plaintext, s.dek);
  const copies = async () => (await hsm.run({ op: 'find', cls: 'secret', id: kekId })).handles.length;
  t.equal(await copies(), 2, 'the token key and its session copy');
  await hsm.evictKey(kek);
  t.equal(await copies(), 1, 'the copy is destroyed on evict');
  const again = await hsm.run({ op: 'decrypt', key: kek, iv: s.iv, ciphertext: s.ciphertext, aad: s.aad });
  t.same(again.plaintext, s.dek, 'and re-made on next use');
  t.equal(await copies(), 2);
});
