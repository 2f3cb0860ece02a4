import t from 'tap';
import { digestForAudit, sanitizeEvent, sanitizeValue, LIMITS } from '../../src/audit/record.js';
import { canonicalJson, recordHash } from '../../src/audit/canonical.js';
import { request } from './fixtures.js';

t.test('digestForAudit is 16 hex of SHA-256', async (t) => {
  t.equal(digestForAudit(Buffer.from('abc')), 'ba7816bf8f01cfea');
  t.not(digestForAudit(Buffer.from('abd')), digestForAudit(Buffer.from('abc')));
});

t.test('binary values never reach a record', async (t) => {
  const ev = request(1, {
    details: { blob: Buffer.from('secret-bytes') as never, nested: { u8: new Uint8Array(4) as never } },
  });
  const body = sanitizeEvent(ev);
  const text = canonicalJson(body);
  t.notMatch(text, /secret-bytes/);
  t.same(body.details, { blob: '[binary removed]', nested: { u8: '[binary removed]' } });
  t.equal(sanitizeValue(new ArrayBuffer(8)), '[binary removed]');
  t.equal(sanitizeValue(Buffer.from('x')), '[binary removed]');
});

t.test('fields named like secrets are redacted', async (t) => {
  const body = sanitizeEvent(
    request(1, {
      context: {
        pin: '1234',
        userPin: '9999',
        password: 'pw',
        dekPlaintext: 'k',
        privateKey: 'pk',
        reason: 'ok',
      },
    }),
  );
  t.same(body.context, {
    pin: '[redacted]',
    userPin: '[redacted]',
    password: '[redacted]',
    dekPlaintext: '[redacted]',
    privateKey: '[redacted]',
    reason: 'ok',
  });
});

t.test('strings, arrays, objects and depth are capped', async (t) => {
  const long = 'x'.repeat(5000);
  const s = sanitizeValue(long) as string;
  t.ok(s.length < 1100);
  t.ok(s.startsWith('x'.repeat(LIMITS.maxString)));
  t.match(s, /\(\+3976\)$/);
  const arr = sanitizeValue(Array.from({ length: 100 }, (_, i) => i)) as unknown[];
  t.equal(arr.length, LIMITS.maxEntries + 1);
  const obj = sanitizeValue(
    Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, i])),
  ) as object;
  t.equal(Object.keys(obj).length, LIMITS.maxEntries + 1);
  let deep: Record<string, unknown> = { v: 1 };
  for (let i = 0; i < 10; i++) deep = { d: deep };
  t.match(canonicalJson(sanitizeValue(deep)), /\[too deep\]/);
  t.equal(sanitizeValue(Number.NaN), null);
  t.equal(sanitizeValue(10n), '10');
  t.equal(
    sanitizeValue(() => 1),
    undefined,
  );
});

t.test('writer-owned fields cannot be set by callers', async (t) => {
  const body = sanitizeEvent({ ...request(1), seq: 99, hash: 'x', prev: 'y', ts: 'z' } as never);
  t.notOk('seq' in body);
  t.notOk('hash' in body);
  t.notOk('prev' in body);
  t.notOk('ts' in body);
});

t.test('bad events are refused', async (t) => {
  for (const bad of [null, 'x', 42, [], Buffer.from('x'), { type: 'start' }, { type: 'nope' }, {}]) {
    t.throws(() => sanitizeEvent(bad), { code: 'AUDIT_BAD_RECORD' }, JSON.stringify(bad));
  }
});

t.test('canonical form sorts keys, so the hash ignores construction order', async (t) => {
  t.equal(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] }), '{"a":[{"c":2,"d":1}],"b":1}');
  t.equal(recordHash({ a: 1, b: 2, hash: 'x' }), recordHash({ b: 2, a: 1 }));
  t.not(recordHash({ a: 1 }), recordHash({ a: 2 }));
});
