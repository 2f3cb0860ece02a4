// The input checks the client commands share: base64, key names, k=v pairs, durations
// and times. Each error names the flag it was given.
import t from 'tap';
import { UsageError } from '../../src/cli/client/cli-io.js';
import {
  parseAad,
  parseBase64,
  parseDuration,
  parseIntInRange,
  parseKeyName,
  parsePairs,
  parseTime,
} from '../../src/cli/client/parse-input.js';

t.test('base64: standard and URL-safe, padded or not; everything else refused', async (t) => {
  const bytes = Buffer.from([0xfb, 0xff, 0xfe, 0x01]);
  t.same(parseBase64(bytes.toString('base64'), '--x', { maxBytes: 10 }), bytes);
  t.same(parseBase64(bytes.toString('base64').replace(/=+$/, ''), '--x', { maxBytes: 10 }), bytes);
  t.same(parseBase64(bytes.toString('base64url'), '--x', { maxBytes: 10 }), bytes);
  for (const bad of ['a', 'abcde', '+_ab', 'ab c', 'ab\n', 'YQ=', 'YQ===', '====', 'ab=c', '€€']) {
    t.throws(
      () => parseBase64(bad, '--x', { maxBytes: 10 }),
      { name: 'UsageError', message: '--x: not valid base64' },
      JSON.stringify(bad),
    );
  }
  t.throws(() => parseBase64('', '--x', { maxBytes: 10 }), /--x: empty/);
  t.same(parseBase64('', '--x', { maxBytes: 10, allowEmpty: true }), Buffer.alloc(0));
  t.throws(
    () => parseBase64(Buffer.alloc(11).toString('base64'), '--x', { maxBytes: 10 }),
    /--x: decodes to 11 bytes; the limit is 10/,
  );
});

t.test('key names follow admin.proto', async (t) => {
  for (const ok of ['a', 'A9', '9a', 'a.b_c-d', 'x'.repeat(128)]) t.equal(parseKeyName(ok, '--key'), ok);
  for (const bad of ['', '-a', '.a', '_a', 'a b', 'a/b', 'é', 'x'.repeat(129)]) {
    t.throws(() => parseKeyName(bad, '--key'), UsageError, JSON.stringify(bad));
  }
});

t.test('k=v pairs', async (t) => {
  t.same(parsePairs(['a=1', 'b=', 'c=x=y'], '--tag'), { a: '1', b: '', c: 'x=y' });
  t.throws(() => parsePairs(['=1'], '--tag'), /--tag: expected key=value/);
  t.throws(() => parsePairs(['a b=1'], '--tag'), /--tag: key "a b" must be/);
  t.throws(() => parsePairs(['a=' + 'v'.repeat(1025)], '--tag'), /--tag: value of a is longer than 1024/);
  t.throws(() => parsePairs(['__proto__=1', '__proto__=2'], '--tag'), /given twice/);
  const p = parsePairs(['__proto__=1'], '--tag');
  t.equal(Object.getPrototypeOf(p), Object.prototype, 'no prototype pollution');
  t.equal(Object.getOwnPropertyDescriptor(p, '__proto__')?.value, '1', 'kept as an ordinary entry');
});

t.test('integers, durations and times', async (t) => {
  t.equal(parseIntInRange('42', '--n', 1, 100), 42);
  t.throws(() => parseIntInRange('1e3', '--n', 1, 10000), /--n: expected an integer/);
  t.throws(() => parseIntInRange('101', '--n', 1, 100), /--n: must be between 1 and 100, got 101/);
  t.equal(parseDuration('90d', '--d'), 90 * 86400);
  t.equal(parseDuration('12h', '--d'), 12 * 3600);
  t.equal(parseDuration('45', '--d'), 45);
  t.throws(() => parseDuration('1w', '--d'), /--d: expected a duration/);
  const now = new Date('2026-05-01T12:00:00Z');
  t.equal(parseTime('15m', '--since', now).toISOString(), '2026-05-01T11:45:00.000Z');
  t.equal(parseTime('2026-01-31T00:00:00Z', '--since', now).toISOString(), '2026-01-31T00:00:00.000Z');
  t.throws(() => parseTime('2026-13-45', '--since', now), /--since: expected an ISO 8601 time/);
  t.throws(() => parseTime('tomorrow', '--until', now), /--until/);
});

t.test('AAD as text or base64, bounded', async (t) => {
  t.same(parseAad({ aad: 'héllo' }, 100), Buffer.from('héllo'));
  t.same(parseAad({ aadBase64: 'aGk=' }, 100), Buffer.from('hi'));
  t.same(parseAad({}, 100), Buffer.alloc(0));
  t.same(parseAad({ aadBase64: '' }, 100), Buffer.alloc(0));
  t.throws(() => parseAad({ aad: 'é'.repeat(51) }, 100), /--aad: 102 bytes; the limit is 100/);
  t.throws(() => parseAad({ aad: 'a', aadBase64: 'YQ' }, 100), /give one, not both/);
});
