// Policy documents: good ones in both formats, bad ones refused with the path named.
import t from 'tap';
import { decide } from '../../src/policy/decide.js';
import { formatPath, parsePolicy, PolicyError, policyFromValue } from '../../src/policy/parse.js';

const GOOD_JSON = JSON.stringify({
  version: 1,
  roles: { user: ['wrapKey'] },
  bindings: [{ identity: 'spiffe://d/x', roles: ['user'] }],
});

t.test('YAML and JSON give the same policy', async (t) => {
  const fromJson = parsePolicy(GOOD_JSON, 'json');
  const fromYaml = parsePolicy(
    'version: 1\nroles:\n  user: [wrapKey]\nbindings:\n  - identity: spiffe://d/x\n    roles: [user]\n',
    'yaml',
  );
  t.same(fromJson.document, fromYaml.document);
  t.same(fromJson.document.deny, [], 'defaults filled in');
  t.equal(decide(fromJson, { identity: 'spiffe://d/x', permission: 'wrapKey', keyName: 'k' }).allowed, true);
});

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof PolicyError) return err.problems;
    throw err;
  }
  throw new Error('expected a PolicyError');
}

const bad: Array<[string, unknown, RegExp]> = [
  ['missing version', { roles: {} }, /^version: version must be 1/],
  ['wrong version', { version: 2 }, /^version: version must be 1/],
  ['unknown top-level field', { version: 1, rules: [] }, /^\(root\): .*"rules"/],
  [
    'unknown permission in a role',
    { version: 1, roles: { r: ['wrapKey', 'fly'] } },
    /^roles\.r\[1\]: unknown permission "fly"/,
  ],
  ['empty role', { version: 1, roles: { r: [] } }, /^roles\.r: list at least one permission/],
  ['bad role name', { version: 1, roles: { 'a b': ['get'] } }, /^roles\["a b"\]: role names must match/],
  [
    'binding to an unknown role',
    { version: 1, roles: { r: ['get'] }, bindings: [{ identity: 'x', roles: ['r', 'nope'] }] },
    /^bindings\[0\]\.roles\[1\]: unknown role "nope"/,
  ],
  [
    'unknown field in a binding',
    { version: 1, roles: { r: ['get'] }, bindings: [{ identity: 'x', roles: ['r'], key: ['a'] }] },
    /^bindings\[0\]: .*"key"/,
  ],
  [
    'bad identity pattern',
    { version: 1, roles: { r: ['get'] }, bindings: [{ identity: 'a***', roles: ['r'] }] },
    /^bindings\[0\]\.identity: three or more stars/,
  ],
  [
    'bad key pattern in a binding',
    { version: 1, roles: { r: ['get'] }, bindings: [{ identity: 'x', roles: ['r'], keys: ['a/b'] }] },
    /^bindings\[0\]\.keys\[0\]: key patterns may use only/,
  ],
  [
    'empty keys list',
    { version: 1, roles: { r: ['get'] }, bindings: [{ identity: 'x', roles: ['r'], keys: [] }] },
    /^bindings\[0\]\.keys: omit "keys"/,
  ],
  [
    'reasons without a missing rule',
    { version: 1, keys: [{ key: 'k', reasons: { allowed: ['a'] } }] },
    /^keys\[0\]\.reasons\.missing: missing must be "allow" or "deny"/,
  ],
  [
    'missing rule with a bad value',
    { version: 1, keys: [{ key: 'k', reasons: { allowed: ['a'], missing: 'maybe' } }] },
    /^keys\[0\]\.reasons\.missing: missing must be/,
  ],
  [
    'empty reason allowlist',
    { version: 1, keys: [{ key: 'k', reasons: { allowed: [], missing: 'deny' } }] },
    /^keys\[0\]\.reasons\.allowed: list at least one allowed reason/,
  ],
  [
    'reason with a space',
    { version: 1, keys: [{ key: 'k', reasons: { allowed: ['two words'], missing: 'deny' } }] },
    /^keys\[0\]\.reasons\.allowed\[0\]: a reason is/,
  ],
  [
    'duplicate key pattern',
    { version: 1, keys: [{ key: 'k-*' }, { key: 'k-*' }] },
    /^keys\[1\]\.key: key pattern "k-\*" already has a rule at keys\[0\]/,
  ],
  [
    'grant without permissions',
    { version: 1, keys: [{ key: 'k', grants: [{ identity: 'x', permissions: [] }] }] },
    /^keys\[0\]\.grants\[0\]\.permissions: list at least one permission/,
  ],
  ['deny without identity', { version: 1, deny: [{ permissions: ['purge'] }] }, /^deny\[0\]\.identity: /],
  ['roles as a list', { version: 1, roles: ['a'] }, /^roles: /],
  ['not an object', 'version: 1', /^\(root\): /],
];

for (const [what, doc, expected] of bad) {
  t.test(`refused: ${what}`, async (t) => {
    const problems = problemsOf(() => policyFromValue(doc));
    t.ok(
      problems.some((p) => expected.test(p)),
      `a problem matches ${expected}`,
      { problems },
    );
  });
}

t.test('all shape problems are listed at once; cross-references once the shape is right', async (t) => {
  const problems = problemsOf(() =>
    policyFromValue({ version: 1, roles: { r: ['fly'] }, bindings: [{ identity: '', roles: ['x'] }] }),
  );
  t.equal(problems.length, 2, 'role permission and identity');
  t.ok(problems.some((p) => p.startsWith('roles.r[0]')));
  t.ok(problems.some((p) => p.startsWith('bindings[0].identity')));
  const second = problemsOf(() =>
    policyFromValue({
      version: 1,
      roles: { r: ['get'], 'b c': ['get'] },
      bindings: [{ identity: 'i', roles: ['x', 'y'] }],
    }),
  );
  t.same(second, [
    'roles["b c"]: role names must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$',
    'bindings[0].roles[0]: unknown role "x"',
    'bindings[0].roles[1]: unknown role "y"',
  ]);
});

t.test('the error message lists the problems', async (t) => {
  t.throws(() => policyFromValue({ version: 1, roles: { r: ['fly'] } }), {
    name: 'PolicyError',
    code: 'POLICY_INVALID',
    message: /invalid policy:\n {2}- roles\.r\[0\]: unknown permission "fly"/,
  });
});

t.test('syntax errors', async (t) => {
  t.match(problemsOf(() => parsePolicy('{"version": 1,', 'json'))[0], /^\(syntax\): /);
  t.match(problemsOf(() => parsePolicy('version: 1\nroles: [unclosed\n', 'yaml'))[0], /^\(syntax\): /);
  t.match(
    problemsOf(() => parsePolicy('version: 1\nversion: 1\n', 'yaml'))[0],
    /^\(syntax\): .*unique/i,
    'duplicate YAML keys are refused',
  );
  t.match(problemsOf(() => parsePolicy('', 'yaml'))[0], /^\(root\): /, 'an empty document');
  t.match(problemsOf(() => parsePolicy(GOOD_JSON, 'toml' as never))[0], /^\(format\): /);
});

t.test('formatPath', async (t) => {
  t.equal(formatPath([]), '(root)');
  t.equal(formatPath(['bindings', 0, 'roles', 2]), 'bindings[0].roles[2]');
  t.equal(formatPath(['roles', 'a b']), 'roles["a b"]');
});
