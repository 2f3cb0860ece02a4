/* eslint-disable @typescript-eslint/no-explicit-any -- messages of dynamically loaded gRPC clients are untyped */
// UnwrapStream bounds what one stream can have in flight; the audit log fails closed
// (no record, no response) and takes health down with it; the observer sees calls in
// started/finished pairs.
import type { ClientDuplexStream } from '@grpc/grpc-js';
import t from 'tap';
import { call, reasonOf, settle, startHarness } from './fixtures.js';

const h = await startHarness({ streamMaxInFlight: 4 });
t.teardown(() => h.close());
const c = h.client();
const g = await call<{ envelope: Buffer; plaintextDek: Buffer }>(c, 'GenerateDataKey', { keyName: 'demo' });

t.test(
  'a stream never has more than its in-flight bound at the HSM, and every message is answered',
  async (t) => {
    const orig = h.hsm.batch.bind(h.hsm);
    let outstanding = 0;
    let max = 0;
    h.hsm.batch = async (ops, o) => {
      outstanding += ops.length;
      max = Math.max(max, outstanding);
      try {
        await new Promise((r) => setTimeout(r, 5));
        return await orig(ops, o);
      } finally {
        outstanding -= ops.length;
      }
    };
    t.teardown(() => {
      h.hsm.batch = orig;
    });
    const stream = (c.UnwrapStream as () => ClientDuplexStream<any, any>).call(c);
    const got = new Set<string>();
    let wrong = 0;
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (m: any) => {
        got.add(m.correlationId);
        if (!m.result?.plaintextDek.equals(g.plaintextDek)) wrong++;
      });
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    for (let i = 0; i < 200; i++)
      stream.write({ correlationId: String(i), request: { envelope: g.envelope } });
    stream.end();
    await done;
    t.equal(got.size, 200);
    t.equal(wrong, 0);
    t.ok(max <= 4, `at most 4 items of this stream at the HSM at once (saw ${max})`);
    t.ok(max >= 1);
  },
);

t.test('observer: every started call finishes once, streams count per message', async (t) => {
  const before = h.calls.length;
  const startedBefore = h.started.length;
  await call(c, 'Unwrap', { envelope: g.envelope });
  await settle(call(c, 'Unwrap', { envelope: Buffer.from('bad') }));
  const reports = h.calls.slice(before);
  t.same(
    reports.map((r) => [r.method, r.status, r.reason, r.identityClass, r.items]),
    [
      ['Unwrap', 'OK', '', 'client', 1],
      ['Unwrap', 'INVALID_ARGUMENT', 'MALFORMED_ENVELOPE', 'client', 1],
    ],
  );
  t.ok(reports[0]!.seconds > 0);
  t.ok(reports[0]!.hsmSeconds! > 0, 'the HSM step is timed');
  t.same(h.started.slice(startedBefore), ['hyok.v1.Hyok/Unwrap', 'hyok.v1.Hyok/Unwrap']);
  t.equal(
    h.started.length,
    h.calls.length,
    'started and finished pair up over the whole file (streams included)',
  );
});

t.test('audit fails closed: no durable record, no response (UNAVAILABLE AUDIT_UNAVAILABLE)', async (t) => {
  const append = h.audit.append.bind(h.audit);
  h.audit.append = () => Promise.reject(new Error('disk on fire'));
  t.teardown(() => {
    h.audit.append = append;
  });
  const [e, v] = await settle(call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: g.envelope }));
  t.equal(v, null, 'no DEK left the server');
  t.equal(e?.code, 14);
  t.equal(reasonOf(e), 'AUDIT_UNAVAILABLE');
  t.notMatch(e?.details, /disk on fire/, 'the internal cause stays in the operational log');
  const [eb] = await settle(call(c, 'BatchUnwrap', { items: [{ envelope: g.envelope }] }));
  t.equal(reasonOf(eb), 'AUDIT_UNAVAILABLE', 'batches fail closed too');
  h.audit.append = append;
  const ok = await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: g.envelope });
  t.same(ok.plaintextDek, g.plaintextDek);
});

t.test('health is NOT_SERVING while the audit sink is unhealthy', async (t) => {
  t.equal(h.server.health.check(), 'SERVING');
  const healthy = h.audit.healthy.bind(h.audit);
  h.audit.healthy = () => false;
  t.teardown(() => {
    h.audit.healthy = healthy;
  });
  t.equal(h.server.health.check(), 'NOT_SERVING');
  h.audit.healthy = healthy;
  t.equal(h.server.health.check(), 'SERVING');
});

t.test(
  'a client that stops reading stops the stream: the server does not queue unbounded output',
  async (t) => {
    const stream = (c.UnwrapStream as () => ClientDuplexStream<any, any>).call(c);
    let received = 0;
    stream.on('data', () => received++);
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    stream.pause();
    const total = 8000;
    const before = h.hsm.counters().ops.decrypt ?? 0;
    for (let i = 0; i < total; i++)
      stream.write({ correlationId: String(i), request: { envelope: g.envelope } });
    stream.end();
    const processed = () => (h.hsm.counters().ops.decrypt ?? 0) - before;
    let last = -1;
    for (let i = 0; i < 100 && processed() !== last; i++) {
      last = processed();
      await new Promise((r) => setTimeout(r, 150));
    }
    t.comment(`processed while the client was not reading: ${processed()} of ${total}`);
    t.ok(processed() < total, 'the server stopped taking work');
    stream.resume();
    await ended;
    t.equal(received, total, 'every message is answered once the client reads again');
  },
);
