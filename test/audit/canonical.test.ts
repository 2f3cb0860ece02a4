import t from 'tap';
import { createHash } from 'node:crypto';
import { canonicalJson, hashAndLine, recordHash } from '../../src/audit/canonical.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

t.test('canonicalJson sorts keys by code unit, drops undefined members, keeps arrays in order', async (t) => {
  t.equal(
    canonicalJson({ b: 1, a: [3, { y: null, x: 'é' }], c: undefined, B: true }),
    '{"B":true,"a":[3,{"x":"é","y":null}],"b":1}',
  );
  t.equal(canonicalJson([]), '[]');
  t.equal(canonicalJson({}), '{}');
  t.throws(() => canonicalJson(undefined), TypeError);
});

t.test('recordHash is SHA-256 over the canonical form without hash', async (t) => {
  const rec = { type: 'request', seq: 3, hash: 'ignored', prev: '0'.repeat(64) };
  t.equal(recordHash(rec), sha('{"prev":"' + '0'.repeat(64) + '","seq":3,"type":"request"}'));
  t.equal(recordHash({ ...rec, hash: 'other' }), recordHash(rec), 'the hash field does not count');
  t.not(recordHash({ ...rec, seq: 4 }), recordHash(rec));
});

t.test('hashAndLine gives the same hash and bytes as hashing and serializing separately', async (t) => {
  const cases: Array<Record<string, unknown>> = [
    { type: 'request', seq: 1, ts: '2026-01-01T00:00:00.000Z', prev: 'p', key: { name: 'k', version: 2 } },
    { a: 1 }, // every key before "hash"
    { z: 1, y: [1, 2] }, // every key after "hash"
    {}, // no member at all
    { hasg: 1, hasi: 2, hash: 'stale', h: undefined, zz: undefined }, // neighbours of "hash", a stale hash, undefined
  ];
  for (const rec of cases) {
    const { hash, line } = hashAndLine(rec);
    t.equal(hash, recordHash(rec), `hash of ${JSON.stringify(rec)}`);
    t.equal(line, canonicalJson({ ...rec, hash }), `line of ${JSON.stringify(rec)}`);
    const parsed = JSON.parse(line) as Record<string, unknown>;
    t.equal(parsed.hash, hash);
    t.equal(recordHash(parsed), hash, 'a verifier re-hashing the parsed line agrees');
  }
});

t.test('the native fast path and the general path agree on every shape', async (t) => {
  // Sorted, plain trees take JSON.stringify; anything else takes the general path.
  const expect = (v: unknown, want: string, what: string) => t.equal(canonicalJson(v), want, what);
  expect({ a: { b: 1, c: [true, null, 's'] } }, '{"a":{"b":1,"c":[true,null,"s"]}}', 'sorted plain tree');
  expect({ c: 1, a: { z: 1, b: 2 } }, '{"a":{"b":2,"z":1},"c":1}', 'unsorted at two levels');
  expect({ 10: 'x', 9: 'y', a: 1 }, '{"10":"x","9":"y","a":1}', 'integer-like keys sort as strings');
  expect({ a: 1, b: undefined }, '{"a":1}', 'undefined member dropped');
  expect({ a: Number.NaN }, '{"a":null}', 'non-finite numbers as JSON has them');
  const withProto = Object.create({ inherited: 1 }) as Record<string, unknown>;
  withProto.own = 2;
  expect(withProto, '{"own":2}', 'only own keys');
  expect({ B: 1, a: 2, É: 3 }, '{"B":1,"a":2,"É":3}', 'code-unit order, not locale order');
});
