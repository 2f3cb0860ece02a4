/* eslint-disable @typescript-eslint/no-explicit-any -- messages of dynamically loaded gRPC clients are untyped */
// Backpressure, deadlines, health and graceful shutdown on a real server whose HSM has
// one session and a tiny queue.
import { credentials, loadPackageDefinition, Metadata, type Client } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import t from 'tap';
import { call, reasonOf, settle, startHarness } from './fixtures.js';

const h = await startHarness({ hsm: { sessions: 1, queueCapacity: 4 } });
t.teardown(() => h.close());
const c = h.client();
const g = await call<{ envelope: Buffer; plaintextDek: Buffer }>(c, 'GenerateDataKey', { keyName: 'demo' });

t.test('a full HSM queue answers RESOURCE_EXHAUSTED QUEUE_FULL, and memory stays bounded', async (t) => {
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  let exhausted = 0;
  let ok = 0;
  const other: string[] = [];
  for (let round = 0; round < 10; round++) {
    const results = await Promise.all(
      Array.from({ length: 100 }, () =>
        settle(call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: g.envelope })),
      ),
    );
    for (const [e, v] of results) {
      if (!e && v!.plaintextDek.equals(g.plaintextDek)) ok++;
      else if (e?.code === 8 && reasonOf(e) === 'QUEUE_FULL') exhausted++;
      else other.push(`${e?.code} ${reasonOf(e)}`);
    }
  }
  t.comment(`ok=${ok} exhausted=${exhausted}`);
  t.same(other, [], 'every call either succeeded or was refused with QUEUE_FULL');
  t.ok(exhausted > 0, 'some calls were refused');
  t.ok(ok > 0, 'some calls went through');
  t.ok(h.hsm.counters().rejectedQueueFull > 0);
  t.ok(h.hsm.counters().queueDepth <= 4);
  const grown = process.memoryUsage().heapUsed - heapBefore;
  t.ok(grown < 64 * 1024 * 1024, `heap grew ${Math.round(grown / 1024)} KiB over 1000 calls`);
  // And it serves normally once the burst is over.
  const after = await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: g.envelope });
  t.same(after.plaintextDek, g.plaintextDek);
});

t.test(
  'deadline: work whose deadline has passed is not started; the HSM gets the remaining time',
  async (t) => {
    // A slow step before the HSM (key resolution) lets the deadline pass.
    const forUnwrap = h.keys.forUnwrap.bind(h.keys);
    h.keys.forUnwrap = (...a) => new Promise((r) => setTimeout(r, 300)).then(() => forUnwrap(...a));
    const orig = h.hsm.batch.bind(h.hsm);
    const timeouts: (number | undefined)[] = [];
    h.hsm.batch = (ops, o) => {
      timeouts.push(o?.timeoutMs);
      return orig(ops, o);
    };
    t.teardown(() => {
      h.hsm.batch = orig;
      h.keys.forUnwrap = forUnwrap;
    });
    const before = h.hsm.counters().ops.decrypt ?? 0;
    const [e] = await settle(call(c, 'Unwrap', { envelope: g.envelope }, { deadline: Date.now() + 100 }));
    t.equal(e?.code, 4, 'DEADLINE_EXCEEDED');
    await new Promise((r) => setTimeout(r, 400));
    t.same(timeouts, [], 'no HSM batch was submitted after the deadline');
    t.equal((h.hsm.counters().ops.decrypt ?? 0) - before, 0, 'the HSM never ran the expired item');
    h.keys.forUnwrap = forUnwrap;
    const fine = await call<{ plaintextDek: Buffer }>(
      c,
      'Unwrap',
      { envelope: g.envelope },
      { deadline: Date.now() + 5000 },
    );
    t.same(fine.plaintextDek, g.plaintextDek);
    t.equal(timeouts.length, 1);
    t.ok(
      timeouts[0]! > 0 && timeouts[0]! <= 5000,
      `the HSM step is capped by the deadline (${timeouts[0]} ms)`,
    );
    await call(c, 'Unwrap', { envelope: g.envelope });
    t.equal(timeouts[1], undefined, 'no deadline: the backend default applies');
  },
);

function healthClient(): Client {
  const Health = loadPackageDefinition({ 'grpc.health.v1.Health': healthService } as never) as any;
  return new Health.grpc.health.v1.Health(
    `127.0.0.1:${h.server.port}`,
    credentials.createSsl(
      Buffer.from(h.ca.certPem),
      Buffer.from(h.clientCert.keyPem),
      Buffer.from(h.clientCert.certPem),
    ),
  );
}

t.test('health: NOT_SERVING when the HSM fails, SERVING again after it recovers', async (t) => {
  const hc = healthClient() as any;
  t.teardown(() => hc.close());
  const check = () =>
    new Promise<string>((resolve, reject) =>
      hc.Check({ service: 'hyok.v1.Hyok' }, (e: Error | null, r: { status: string }) =>
        e ? reject(e) : resolve(r.status),
      ),
    );
  t.equal(await check(), 'SERVING');
  const seen: string[] = [];
  const watch = hc.Watch({ service: 'hyok.v1.Hyok' }, new Metadata());
  watch.on('data', (r: { status: string }) => seen.push(r.status));
  watch.on('error', () => {});
  t.teardown(() => watch.cancel());
  await new Promise((r) => setTimeout(r, 100));
  h.hsm.injectFault('CKR_DEVICE_ERROR', 1);
  const [e] = await settle(call(c, 'Unwrap', { envelope: g.envelope }));
  t.equal(e?.code, 14, 'the failing call is UNAVAILABLE (retriable)');
  t.equal(reasonOf(e), 'HSM_UNAVAILABLE');
  const until = Date.now() + 10_000;
  while (!(seen.includes('NOT_SERVING') && seen.at(-1) === 'SERVING') && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 25));
  }
  t.same(seen.slice(0, 1), ['SERVING']);
  t.ok(seen.includes('NOT_SERVING'), `watchers saw NOT_SERVING (${seen.join(' → ')})`);
  t.equal(seen.at(-1), 'SERVING', 'and SERVING after recovery');
  t.equal(await check(), 'SERVING');
  const r = await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: g.envelope });
  t.same(r.plaintextDek, g.plaintextDek, 'serves again');
});

t.test('SIGTERM drain: in-flight calls finish, new calls are refused, then the HSM closes', async (t) => {
  const orig = h.hsm.batch.bind(h.hsm);
  h.hsm.batch = (ops, o) =>
    new Promise((resolve, reject) => setTimeout(() => orig(ops, o).then(resolve, reject), 400));
  const inflight = Array.from({ length: 3 }, () =>
    call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: g.envelope }),
  );
  await new Promise((r) => setTimeout(r, 100));
  const stopping = h.server.shutdown();
  await new Promise((r) => setTimeout(r, 20));
  const late = h.client();
  const [eLate] = await settle(
    call(late, 'Echo', { payload: Buffer.from('x') }, { deadline: Date.now() + 2000 }),
  );
  t.ok(eLate, 'a new connection after shutdown began is refused');
  const results = await Promise.all(inflight);
  for (const r of results) t.same(r.plaintextDek, g.plaintextDek, 'in-flight call completed');
  const { drained } = await stopping;
  t.equal(drained, true);
  t.equal(h.hsm.state(), 'closed', 'the HSM is closed after the drain');
  t.equal(h.audit.healthy(), false, 'the audit writer is closed');
  h.hsm.batch = orig;
});
