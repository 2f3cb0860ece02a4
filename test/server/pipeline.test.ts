/* eslint-disable @typescript-eslint/no-explicit-any -- audit events read back untyped */
// The pipeline steps on their own (no network): request id and context validation,
// deadline checks before the HSM, audit-first finish, and where internal detail goes.
import { Writable } from 'node:stream';
import t from 'tap';
import { HyokError } from '../../src/errors.js';
import { createFakeBackend } from '../../src/hsm/fake-backend.js';
import { createLogger } from '../../src/log.js';
import type { AuditEvent } from '../../src/audit/index.js';
import {
  CallContext,
  contextOf,
  finishCall,
  hsmBatch,
  recorded,
  requestIdOf,
  type PipelineDeps,
} from '../../src/server/pipeline.js';
import type { CallReport } from '../../src/server/observer.js';

t.test(
  'requestIdOf: empty → a fresh UUID; printable ASCII up to 128 kept; anything else refused',
  async (t) => {
    t.match(requestIdOf(''), /^[0-9a-f-]{36}$/);
    t.match(requestIdOf(undefined), /^[0-9a-f-]{36}$/);
    t.not(requestIdOf(''), requestIdOf(''));
    t.equal(requestIdOf('abc-123_x.y'), 'abc-123_x.y');
    t.equal(requestIdOf('x'.repeat(128)), 'x'.repeat(128));
    for (const bad of ['x'.repeat(129), 'has space', 'tab\t', 'ünïcode', 42]) {
      t.throws(() => requestIdOf(bad), { code: 'INVALID_REQUEST' }, `refuses ${JSON.stringify(bad)}`);
    }
  },
);

t.test('contextOf: bounded entries, key and value sizes, strings only', async (t) => {
  t.same(contextOf(undefined, 4), {});
  t.same(contextOf({ reason: 'audit', tenant: 't1' }, 4), { reason: 'audit', tenant: 't1' });
  t.throws(() => contextOf({ a: '1', b: '2', c: '3' }, 2), { code: 'INVALID_REQUEST' });
  t.throws(() => contextOf({ ['k'.repeat(65)]: 'v' }, 4), { code: 'INVALID_REQUEST' });
  t.throws(() => contextOf({ k: 'v'.repeat(513) }, 4), { code: 'INVALID_REQUEST' });
  t.throws(() => contextOf({ k: 5 }, 4), { code: 'INVALID_REQUEST' });
  t.throws(() => contextOf('nope', 4), { code: 'INVALID_REQUEST' });
});

async function deps(lines: string[], appended: AuditEvent[], reports: CallReport[]): Promise<PipelineDeps> {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).trim().split('\n'));
      cb();
    },
  });
  return {
    hsm: await createFakeBackend(),
    keys: {} as PipelineDeps['keys'],
    policy: { decide: () => ({ allowed: true, rule: 'test', explanation: '' }), callerClass: () => 'client' },
    audit: {
      append: async (e) => {
        appended.push(e);
      },
      healthy: () => true,
    },
    observer: { callStarted() {}, callFinished: (r) => reports.push(r) },
    log: createLogger({ level: 'info', destination: sink }),
    limits: { maxBatchItems: 4, maxDekBytes: 32, maxAadBytes: 64, maxContextEntries: 4 },
  };
}

const identity = {
  identity: 'spiffe://t/c',
  fingerprint: 'ab'.repeat(32),
  source: 'uri' as const,
  audit: { fingerprint: 'ab'.repeat(32), san: 'spiffe://t/c' },
};
const spec = { service: 'hyok.v1.Hyok', method: 'Unwrap', plane: 'data' as const, audited: true };

t.test('recorded: an audited spec with an audit sink, and nothing else', async (t) => {
  const d = await deps([], [], []);
  const ctx = (audited: boolean) =>
    new CallContext({ ...spec, audited }, identity, 'peer', Infinity, 'r', {}, d.log);
  t.equal(recorded(d, ctx(true)), true);
  t.equal(recorded(d, ctx(false)), false, 'spec not audited (Echo)');
  t.equal(recorded({ ...d, audit: null }, ctx(true)), false, 'audit off');
});

t.test('hsmBatch does not start work whose deadline has passed, and caps the rest', async (t) => {
  const d = await deps([], [], []);
  const seen: (number | undefined)[] = [];
  const orig = d.hsm.batch.bind(d.hsm);
  d.hsm.batch = (ops, o) => {
    seen.push(o?.timeoutMs);
    return orig(ops, o);
  };
  const expired = new CallContext(spec, identity, 'peer', Date.now() - 1, 'r1', {}, d.log);
  await t.rejects(hsmBatch(d, expired, [{ op: 'random', length: 8 }]), { code: 'DEADLINE_EXCEEDED' });
  t.same(seen, [], 'nothing submitted');
  const soon = new CallContext(spec, identity, 'peer', Date.now() + 1000, 'r2', {}, d.log);
  const [r] = await hsmBatch(d, soon, [{ op: 'random', length: 8 }]);
  t.equal(r?.ok, true);
  t.ok(seen[0]! > 0 && seen[0]! <= 1000);
  t.same(await hsmBatch(d, soon, []), [], 'an empty batch is not submitted');
  t.equal(seen.length, 1);
});

t.test(
  'finishCall: audit first; INTERNAL detail goes to the log with the request id, never to the client',
  async (t) => {
    const lines: string[] = [];
    const appended: AuditEvent[] = [];
    const reports: CallReport[] = [];
    const d = await deps(lines, appended, reports);
    const ctx = new CallContext(
      spec,
      identity,
      'ipv4:127.0.0.1:5',
      Infinity,
      'req-7',
      { reason: 'why' },
      d.log,
    );
    ctx.key = { name: 'demo', version: 2 };
    const ge = await finishCall(d, ctx, new Error('sqlite: database disk image is malformed'));
    t.equal(ge?.code, 13);
    t.equal(ge?.details, 'Internal error');
    t.equal(appended.length, 1);
    t.match(appended[0], {
      type: 'request',
      op: 'Unwrap',
      requestId: 'req-7',
      key: { name: 'demo', version: 2 },
      result: { code: 'INTERNAL' },
      decision: { allowed: false, rule: 'not-evaluated' },
      context: { reason: 'why' },
      peer: 'ipv4:127.0.0.1:5',
    });
    const logged = lines.map((l) => JSON.parse(l));
    t.equal(logged.length, 1);
    t.equal(logged[0].requestId, 'req-7', 'the request id is on the line');
    t.match(logged[0].cause.message, /database disk image/, 'the cause is in the operational log');
    t.same(
      reports.map((r) => [r.status, r.reason]),
      [['INTERNAL', 'INTERNAL']],
    );
  },
);

t.test('finishCall: a failing audit append turns success into UNAVAILABLE AUDIT_UNAVAILABLE', async (t) => {
  const lines: string[] = [];
  const d = await deps(lines, [], []);
  d.audit = { append: () => Promise.reject(new Error('EIO')), healthy: () => false };
  const ctx = new CallContext(spec, identity, 'p', Infinity, 'req-8', {}, d.log);
  const ge = await finishCall(d, ctx, null);
  t.equal(ge?.code, 14);
  t.equal(ge?.hyok.code, 'AUDIT_UNAVAILABLE');
  t.match(lines.join('\n'), /req-8/);
  const fine = await finishCall({ ...d, audit: null }, ctx, null);
  t.equal(fine, null, 'with audit disabled the call succeeds');
  const known = await finishCall({ ...d, audit: null }, ctx, new HyokError('KEY_NOT_FOUND'));
  t.equal(known?.code, 5);
});

t.test('batch audit: one record per 64 items; items without an outcome get the call code', async (t) => {
  const appended: AuditEvent[] = [];
  const d = await deps([], appended, []);
  const ctx = new CallContext(
    { ...spec, method: 'BatchUnwrap' },
    identity,
    'p',
    Infinity,
    'req-9',
    {},
    d.log,
  );
  ctx.auditItems = Array.from({ length: 70 }, (_, i) => ({
    code: '',
    key: { name: 'demo', version: 1 },
    decision: { allowed: true, rule: 'binding[0]:crypto-user' },
    details: { item: i, envelope: 'abcd' },
  }));
  const ge = await finishCall(d, ctx, new HyokError('QUEUE_FULL'));
  t.equal(ge?.code, 8);
  t.equal(appended.length, 2);
  const [a, b] = appended as any[];
  t.equal(a.details.items.length, 64);
  t.equal(b.details.items.length, 6);
  t.same(
    b.details.items.map((it: { i: number }) => it.i),
    [64, 65, 66, 67, 68, 69],
  );
  t.ok(
    [...a.details.items, ...b.details.items].every((it: { code: string }) => it.code === 'QUEUE_FULL'),
    'the whole-call failure reaches every item',
  );
  t.equal(a.result.code, 'QUEUE_FULL');
  t.same(a.key, { name: 'demo', version: 1 });
  t.same(a.decision, { allowed: true, rule: 'binding[0]:crypto-user' });
  t.equal(a.details.itemCount, 70);
});
