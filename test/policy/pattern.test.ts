// Glob semantics for identity and key patterns, as a table.
import t from 'tap';
import { compilePattern, matches, patternProblem, type PatternKind } from '../../src/policy/pattern.js';

const cases: Array<[PatternKind, string, string, boolean]> = [
  ['identity', 'spiffe://hyokd.dev/client', 'spiffe://hyokd.dev/client', true],
  ['identity', 'spiffe://hyokd.dev/client', 'spiffe://hyokd.dev/client2', false],
  ['identity', 'spiffe://hyokd.dev/client', 'SPIFFE://hyokd.dev/client', false],
  ['identity', 'spiffe://hyokd.dev/svc/*', 'spiffe://hyokd.dev/svc/billing', true],
  ['identity', 'spiffe://hyokd.dev/svc/*', 'spiffe://hyokd.dev/svc/', true],
  ['identity', 'spiffe://hyokd.dev/svc/*', 'spiffe://hyokd.dev/svc/billing/worker', false],
  ['identity', 'spiffe://hyokd.dev/svc/**', 'spiffe://hyokd.dev/svc/billing/worker', true],
  ['identity', 'spiffe://hyokd.dev/**', 'spiffe://evil.dev/x', false],
  ['identity', 'spiffe://*/client', 'spiffe://any.domain/client', true],
  ['identity', 'spiffe://*/client', 'spiffe://a/b/client', false],
  ['identity', '*.svc.example', 'api.svc.example', true],
  ['identity', '*.svc.example', 'apiXsvc.example', false],
  ['identity', '*', 'billing-cn', true],
  ['identity', '*', 'spiffe://hyokd.dev/x', false],
  ['identity', '**', 'spiffe://hyokd.dev/x', true],
  ['identity', 'a+b(c)', 'a+b(c)', true],
  ['identity', 'a+b(c)', 'aab(c)', false],
  ['key', 'payments-*', 'payments-eu', true],
  ['key', 'payments-*', 'payments-', true],
  ['key', 'payments-*', 'payment-eu', false],
  ['key', '*-prod', 'a.b-prod', true],
  ['key', 'a.b', 'axb', false],
  ['key', 'p**', 'p.x_y-z', true],
  ['key', 'pay*ments', 'pay-x-ments', true],
  ['key', 'pay*ments', 'pay-x-ment', false],
];

for (const [kind, pattern, value, expected] of cases) {
  t.equal(matches(compilePattern(pattern, kind), value), expected, `${kind} ${pattern} vs ${value}`);
}

const bad: Array<[PatternKind, string, RegExp]> = [
  ['identity', '', /empty/],
  ['identity', '***', /three or more/],
  ['identity', 'spiffe://a b', /whitespace/],
  ['identity', 'x\u0000', /control/],
  ['key', 'pay/ments', /only letters/],
  ['key', 'pay ments', /only letters/],
  ['key', 'a'.repeat(513), /512/],
];
for (const [kind, pattern, why] of bad) {
  t.match(
    patternProblem(pattern, kind),
    why,
    `${kind} pattern ${JSON.stringify(pattern.slice(0, 20))} refused`,
  );
  t.throws(() => compilePattern(pattern, kind), why);
}
t.equal(patternProblem('spiffe://hyokd.dev/**', 'identity'), null);
t.equal(patternProblem('payments-*', 'key'), null);
