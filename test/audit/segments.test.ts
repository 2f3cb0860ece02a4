import t from 'tap';
import {
  bodySegments,
  canonicalJson,
  chainLine,
  hashAndLine,
  recordHash,
} from '../../src/audit/canonical.js';
import { eventSegments, fastJson, sanitizeEvent, sanitizeValue } from '../../src/audit/record.js';

const base = {
  type: 'request',
  plane: 'data',
  identity: { fingerprint: 'ab'.repeat(32), san: 'spiffe://example.org/svc' },
  op: 'Unwrap',
  key: { name: 'demo', version: 3 },
  decision: { allowed: true, rule: 'binding:0' },
  result: { code: 'OK' },
  latencyMs: 1.25,
  peer: 'ipv4:127.0.0.1:40000',
  requestId: 'req-1',
};

class Ident {
  constructor(
    public fingerprint: string,
    public san: string,
  ) {}
}

/** Request events of the pipeline's shape and of every other shape a caller could cast in. */
const variants: Array<[string, unknown]> = [
  ['the pipeline shape', base],
  [
    'with context and details',
    { ...base, context: { reason: 'r', b: 'x', a: 'y' }, details: { envelope: '0f' } },
  ],
  ['keys in another order', Object.fromEntries(Object.entries(base).reverse())],
  ['identity null', { ...base, identity: null }],
  ['identity with an extra field', { ...base, identity: { ...base.identity, extra: 1 } }],
  ['identity as a class instance', { ...base, identity: new Ident('f', 's') }],
  ['identity not strings', { ...base, identity: { fingerprint: 1, san: Buffer.from('x') } }],
  ['key without version', { ...base, key: { name: 'demo' } }],
  ['key with a string version', { ...base, key: { name: 'demo', version: 'primary' } }],
  ['key version undefined', { ...base, key: { name: 'demo', version: undefined } }],
  ['key version NaN', { ...base, key: { name: 'demo', version: Number.NaN } }],
  ['key as an array', { ...base, key: ['demo', 1] }],
  ['key undefined', { ...base, key: undefined }],
  ['latency infinite', { ...base, latencyMs: Number.POSITIVE_INFINITY }],
  ['latency a string', { ...base, latencyMs: '5' }],
  ['latency -0', { ...base, latencyMs: -0 }],
  ['long strings are capped', { ...base, requestId: 'x'.repeat(5000), peer: 'é'.repeat(2000) }],
  ['strings needing escapes', { ...base, op: 'a"b\\c\n\u0001\u2028', requestId: '\ud800' }],
  ['decision with an extra field', { ...base, decision: { ...base.decision, why: 'x' } }],
  ['decision allowed not boolean', { ...base, decision: { allowed: 'yes', rule: 'r' } }],
  ['result with details', { ...base, result: { code: 'X', more: [1, 2] } }],
  ['result a Buffer', { ...base, result: Buffer.from('secret') }],
  ['secret-named context fields', { ...base, context: { pin: '1234', userPassword: 'p', ok: 'v' } }],
  ['binary details', { ...base, details: { blob: new Uint8Array(4), n: 1 } }],
  ['an envelope digest that is not a string', { ...base, details: { envelope: 5 } }],
  ['an envelope digest with escapes', { ...base, details: { envelope: '"\\' } }],
  ['deep details', { ...base, details: { a: { b: { c: { d: { e: { f: { g: 1 } } } } } } } }],
  ['a function member', { ...base, details: () => 1 }],
  ['a Date member', { ...base, details: { at: new Date(0) } }],
  ['plane missing', { ...base, plane: undefined }],
  [
    'batch details',
    {
      ...base,
      details: {
        itemCount: 3,
        items: [
          { i: 0, code: 'OK', key: 'demo', version: 1, rule: 'binding:0', envelope: 'ab' },
          { i: 1, code: 'KEY_NOT_FOUND', key: 'x' },
          { i: 2, code: 'INVALID_CIPHERTEXT' },
        ],
      },
    },
  ],
  [
    'batch rows of other shapes',
    {
      ...base,
      details: {
        itemCount: '3',
        items: [
          Object.assign(Object.create(null), { i: 0, code: 'OK' }),
          { i: 1, code: 'OK', extra: { a: 1 } },
          { i: 2, code: undefined, key: 'k' },
          { i: Number.NaN, code: true, version: -0 },
          { i: 4, code: 'x'.repeat(2000), rule: 'r"\\' },
        ],
      },
    },
  ],
  [
    // Row fields repeat from row to row (the serializer remembers the last of each), then
    // change: value to value, string to number, 0 to -0, and back.
    'batch rows repeating and changing values',
    {
      ...base,
      details: {
        itemCount: 6,
        items: [
          { i: 0, code: 'OK', key: 'a', version: 1, rule: 'r' },
          { i: 1, code: 'OK', key: 'a', version: 1, rule: 'r' },
          { i: 2, code: 'X"', key: 'b', version: '1', rule: 'r' },
          { i: 3, code: 'OK', key: 'a', version: 0, rule: 'r\n' },
          { i: 4, code: 'OK', key: 'a', version: -0 },
          { i: 5, code: 'OK', key: 'a', version: 1, rule: 'r' },
        ],
      },
    },
  ],
  ['batch count not a number', { ...base, details: { itemCount: '3', items: [] } }],
  [
    'batch of too many items',
    {
      ...base,
      details: { itemCount: 70, items: Array.from({ length: 70 }, (_, i) => ({ i, code: 'OK' })) },
    },
  ],
  ['batch items not an array', { ...base, details: { itemCount: 1, items: { 0: { i: 0 } } } }],
  [
    'details with holes, undefined and functions in arrays',
    // eslint-disable-next-line no-sparse-arrays -- a hole on purpose: the sanitizer makes it null
    { ...base, details: { a: [1, , undefined, () => 1] } },
  ],
  ['details with a long key', { ...base, details: { ['k'.repeat(65)]: 1, ['k'.repeat(64)]: 2 } }],
  [
    'details with too many entries',
    { ...base, details: Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`k${i}`, i])) },
  ],
  ['details with a long array', { ...base, details: { a: Array.from({ length: 70 }, (_, i) => i) } }],
  ['details with integer-like keys', { ...base, details: { 10: 'a', 9: 'b', b: 'c', A: 'd' } }],
  ['details with a null prototype', { ...base, details: Object.assign(Object.create(null), { z: 1, a: 2 }) }],
  ['details with a secret-named undefined member', { ...base, details: { secret: undefined, pin: 12 } }],
  ['details with a bigint', { ...base, details: { n: 10n } }],
  ['details with a Date in an array', { ...base, details: { at: [new Date(0)] } }],
  ['details deep to the limit', { ...base, details: { a: { b: { c: { d: { e: 1 } } } } } }],
  ['context with a non-string value', { ...base, context: { n: 1, s: ['x'] } }],
  ['an unknown top-level field', { ...base, extra: 'x' }],
  ['a writer field', { ...base, seq: 99, hash: 'h' }],
  ['a secret-named top-level field', { ...base, pin: '0000' }],
  ['another caller type', { type: 'reload', what: 'policy', ok: true }],
  ['a quorum event', { type: 'quorum', action: 'approved', quorumId: 'q', op: 'Purge' }],
  // Frozen members (as the pipeline shares them): their JSON is remembered, so each shape
  // appears twice, and a frozen object of a shape the direct route does not take must
  // still fall back.
  ...(() => {
    const identity = Object.freeze({ ...base.identity });
    const decision = Object.freeze({ ...base.decision });
    const result = Object.freeze({ code: 'INVALID_CIPHERTEXT' });
    const odd = Object.freeze({ fingerprint: 'f', san: 's', extra: Object.freeze({ n: 1 }) });
    const frozen = { ...base, identity, decision, result };
    return [
      ['frozen identity, decision and result', frozen],
      ['the same frozen members again', { ...frozen, requestId: 'req-2' }],
      ['a frozen identity of another shape', { ...base, identity: odd }],
      [
        'a frozen decision with a non-string rule',
        { ...base, decision: Object.freeze({ allowed: true, rule: 7 }) },
      ],
      ['a frozen result with escapes', { ...base, result: Object.freeze({ code: 'a"\\\n' }) }],
      ['a frozen empty identity', { ...base, identity: Object.freeze({}) }],
      ['a frozen array as the result', { ...base, result: Object.freeze(['OK']) }],
    ] as Array<[string, unknown]>;
  })(),
];

t.test('request events take the direct route to the same bytes as sanitize + canonical JSON', async (t) => {
  for (const [what, ev] of variants) {
    t.same(eventSegments(ev), bodySegments(sanitizeEvent(ev)), what);
  }
});

t.test('latencies print as String() prints them, whole thousandths or not', async (t) => {
  const values = [0, -0, 0.001, 0.009, 0.01, 0.1, 0.5, 0.999, 1, 1.001, 1.01, 1.1, 9.99, 10, 999.999];
  values.push(1000.5, 123456.789, 999999999.999, 1e9, 1e9 + 0.5, 2 ** 53, 1e21, 1e22);
  values.push(0.0005, 1.0000001, 1e-7, 5e-324, -0.001, -1.5, 0.1 + 0.2, 1 / 3);
  // Whole thousandths, as the pipeline computes them (Math.round(ms * 1000) / 1000).
  let x = 12345;
  for (let i = 0; i < 5000; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const ms = (x / 2 ** 31) * 10 ** (i % 10);
    values.push(Math.round(ms * 1000) / 1000);
  }
  let bad = 0;
  for (const latencyMs of values) {
    const ev = { ...base, latencyMs };
    const direct = eventSegments(ev);
    const generic = bodySegments(sanitizeEvent(ev));
    if (direct[1] !== generic[1]) {
      bad++;
      t.equal(direct[1], generic[1], String(latencyMs));
    }
  }
  t.equal(bad, 0, `${values.length} latencies`);
});

t.test('remembered members stay right when their caches fill and start again', async (t) => {
  // More distinct peers and key versions than a cache keeps, then the first ones again.
  const evs: unknown[] = [];
  for (let i = 0; i < 1100; i++) {
    evs.push({ ...base, peer: `ipv4:10.0.${i >> 8}.${i & 255}:1`, key: { name: 'k', version: i } });
  }
  for (const ev of [...evs, ...evs.slice(0, 10)]) {
    const e = ev as { peer: string };
    t.same(eventSegments(ev), bodySegments(sanitizeEvent(ev)), e.peer);
  }
  // A number version and a string version of the same digits are different members.
  for (const version of [1, '1', 1, 0, -0, '0']) {
    const ev = { ...base, key: { name: 'demo', version } };
    t.same(eventSegments(ev), bodySegments(sanitizeEvent(ev)), `version ${JSON.stringify(version)}`);
  }
});

t.test('events that are not accepted fail the same way on both routes', async (t) => {
  for (const ev of [null, 1, 'request', [], { type: 'start' }, { type: 'nope' }, Buffer.from('{}')]) {
    t.throws(() => eventSegments(ev), { code: 'AUDIT_BAD_RECORD' }, JSON.stringify(ev));
  }
});

t.test('chainLine gives the bytes and hash of the whole record', async (t) => {
  const prev = 'c'.repeat(64);
  const ts = '2026-11-25T12:00:00.000Z';
  for (const [what, ev] of variants) {
    const body = sanitizeEvent(ev);
    const { hash, line } = chainLine(eventSegments(ev), 41, ts, prev);
    const rec = { ...body, seq: 41, ts, prev };
    t.same({ hash, line }, hashAndLine(rec), what);
    t.equal(recordHash(JSON.parse(line) as Record<string, unknown>), hash, `${what}: a verifier agrees`);
  }
  // Bodies with members in every segment, and with none.
  for (const body of [
    { type: 'x' },
    { a: 1, i: 2, q: 3, sf: 4, u: 5, type: 'all' },
    { z: 1, type: 'late' },
    { a: null, type: 'early' },
  ]) {
    const { hash, line } = chainLine(bodySegments(body), 0, ts, prev);
    t.same({ hash, line }, hashAndLine({ ...body, seq: 0, ts, prev }), JSON.stringify(body));
  }
});

t.test('bodySegments refuses the writer fields', async (t) => {
  for (const k of ['hash', 'prev', 'seq', 'ts'])
    t.throws(() => bodySegments({ type: 'x', [k]: 1 }), TypeError, k);
});

t.test('the direct route covers the shapes the pipeline builds (it does not fall back)', async (t) => {
  const batch = (variants.find(([w]) => w === 'batch details')![1] as { details: unknown }).details;
  for (const v of [
    batch,
    { envelope: 'ab' },
    { dekLength: 32, rewrap: false },
    { reason: 'r' },
    [1, 'x', null],
  ]) {
    const fast = fastJson(v, 1);
    t.not(fast, null, JSON.stringify(v));
    t.equal(fast, canonicalJson(sanitizeValue(v, 1)), JSON.stringify(v));
  }
  for (const v of [
    { at: new Date(0) },
    { b: Buffer.from('x') },
    () => 1,
    1n,
    { a: { b: { c: { d: { e: { f: 1 } } } } } },
  ]) {
    t.equal(fastJson(v, 1), null, 'falls back');
  }
});
