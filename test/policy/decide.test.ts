// Authorization decisions as a table: identity × permission × key × reason → decision and
// the rule that decided.
import t from 'tap';
import { callerClass, decide, explain, type AuthzRequest } from '../../src/policy/decide.js';
import { parsePolicy } from '../../src/policy/parse.js';
import { MANAGEMENT_PERMISSIONS, type Permission } from '../../src/policy/permissions.js';

const POLICY = `
version: 1
roles:
  crypto-user: [wrapKey, unwrapKey, encrypt, decrypt]
  reader: [get, list]
  admin: ["*"]
bindings:
  - identity: "spiffe://hyokd.dev/svc/*"
    roles: [reader, crypto-user]
    keys: ["payments-*", "shared-*"]
  - identity: "spiffe://hyokd.dev/ops/**"
    roles: [admin]
  - identity: "*.monitor.example"
    roles: [reader]
keys:
  - key: "payments-*"
    grants:
      - identity: "billing.example"
        permissions: [get]
      - identity: "spiffe://partner.dev/**"
        permissions: [unwrapKey]
    reasons:
      allowed: [customer-request, fraud-review]
      missing: deny
      permissions: [unwrapKey, decrypt]
  - key: "shared-*"
    reasons:
      allowed: [batch]
      missing: allow
  - key: "legacy"
    grants:
      - identity: "old-app"
        permissions: ["*"]
deny:
  - identity: "**"
    permissions: [purge]
    keys: ["prod-*", "payments-*"]
  - identity: "spiffe://hyokd.dev/svc/evil"
    permissions: ["*"]
`;

const policy = parsePolicy(POLICY, 'yaml');

type Row = [
  identity: string,
  permission: Permission,
  keyName: string | undefined,
  reason: string | undefined,
  allowed: boolean,
  rule: string,
];

const SVC = 'spiffe://hyokd.dev/svc/app';
const OPS = 'spiffe://hyokd.dev/ops/team/alice';

const rows: Row[] = [
  // role bindings and their key scope
  [SVC, 'wrapKey', 'payments-eu', undefined, true, 'binding[0]:crypto-user'],
  [SVC, 'get', 'payments-eu', undefined, true, 'binding[0]:reader'],
  [SVC, 'wrapKey', 'shared-x', undefined, true, 'binding[0]:crypto-user'],
  [SVC, 'wrapKey', 'other-key', undefined, false, 'default-deny'],
  [SVC, 'list', undefined, undefined, false, 'default-deny'],
  [SVC, 'sign', 'payments-eu', undefined, false, 'default-deny'],
  [SVC, 'delete', 'payments-eu', undefined, false, 'default-deny'],
  ['spiffe://hyokd.dev/svc/app/sub', 'wrapKey', 'payments-eu', 'fraud-review', false, 'default-deny'],
  [OPS, 'create', 'anything', undefined, true, 'binding[1]:admin'],
  [OPS, 'list', undefined, undefined, true, 'binding[1]:admin'],
  [OPS, 'purge', 'test-key', undefined, true, 'binding[1]:admin'],
  ['api.monitor.example', 'list', undefined, undefined, true, 'binding[2]:reader'],
  ['api.monitor.example', 'get', 'payments-eu', undefined, true, 'binding[2]:reader'],
  ['a.b.monitor.example', 'list', undefined, undefined, true, 'binding[2]:reader'],
  ['monitor.example', 'list', undefined, undefined, false, 'default-deny'],
  ['api.monitor.example', 'update', 'k', undefined, false, 'default-deny'],
  // per-key grants win over bindings and come first
  ['billing.example', 'get', 'payments-eu', undefined, true, 'key:payments-*:grant[0]'],
  ['billing.example', 'get', 'shared-x', undefined, false, 'default-deny'],
  ['billing.example', 'list', undefined, undefined, false, 'default-deny'],
  ['old-app', 'sign', 'legacy', undefined, true, 'key:legacy:grant[0]'],
  ['old-app', 'sign', 'legacy2', undefined, false, 'default-deny'],
  // deny wins
  [OPS, 'purge', 'prod-db', undefined, false, 'deny[0]'],
  [OPS, 'purge', 'payments-eu', undefined, false, 'deny[0]'],
  ['old-app', 'purge', 'legacy', undefined, true, 'key:legacy:grant[0]'],
  ['spiffe://hyokd.dev/svc/evil', 'get', 'payments-eu', undefined, false, 'deny[1]'],
  ['spiffe://hyokd.dev/svc/evil', 'list', undefined, undefined, false, 'deny[1]'],
  // reasons: listed, not listed, missing with deny, missing with allow
  [
    'spiffe://partner.dev/a/b',
    'unwrapKey',
    'payments-eu',
    'customer-request',
    true,
    'key:payments-*:grant[1]',
  ],
  [
    'spiffe://partner.dev/a/b',
    'unwrapKey',
    'payments-eu',
    'curiosity',
    false,
    'reason-not-allowed:payments-*',
  ],
  ['spiffe://partner.dev/a/b', 'unwrapKey', 'payments-eu', undefined, false, 'reason-missing:payments-*'],
  ['spiffe://partner.dev/a/b', 'unwrapKey', 'payments-eu', '', false, 'reason-missing:payments-*'],
  [
    'spiffe://partner.dev/a/b',
    'unwrapKey',
    'payments-eu',
    'Customer-Request',
    false,
    'reason-not-allowed:payments-*',
  ],
  [SVC, 'unwrapKey', 'payments-eu', 'fraud-review', true, 'binding[0]:crypto-user'],
  [SVC, 'unwrapKey', 'payments-eu', undefined, false, 'reason-missing:payments-*'],
  [SVC, 'wrapKey', 'payments-eu', 'nonsense', true, 'binding[0]:crypto-user'], // reasons cover unwrap/decrypt only
  [SVC, 'decrypt', 'payments-eu', 'nonsense', false, 'reason-not-allowed:payments-*'],
  [SVC, 'wrapKey', 'shared-x', undefined, true, 'binding[0]:crypto-user'], // missing: allow
  [SVC, 'wrapKey', 'shared-x', 'batch', true, 'binding[0]:crypto-user'],
  [SVC, 'wrapKey', 'shared-x', 'other', false, 'reason-not-allowed:shared-*'],
  // a caller with no access gets default-deny, not a reason complaint
  ['stranger', 'unwrapKey', 'payments-eu', undefined, false, 'default-deny'],
  // default deny and malformed requests
  ['stranger', 'list', undefined, undefined, false, 'default-deny'],
  ['', 'list', undefined, undefined, false, 'invalid-request'],
  [OPS, 'fly' as Permission, 'k', undefined, false, 'invalid-request'],
];

for (const [identity, permission, keyName, reason, allowed, rule] of rows) {
  const req: AuthzRequest = { identity, permission };
  if (keyName !== undefined) req.keyName = keyName;
  if (reason !== undefined) req.reason = reason;
  const d = decide(policy, req);
  const label = `${identity || '(none)'} ${permission} ${keyName ?? '-'} reason=${reason ?? '-'}`;
  t.same({ allowed: d.allowed, rule: d.rule }, { allowed, rule }, label);
  t.ok(d.explanation.includes(allowed ? 'allowed' : 'denied'), `${label}: explanation says the outcome`);
}

t.test('an empty policy denies everything', async (t) => {
  const empty = parsePolicy('version: 1\n', 'yaml');
  t.same(decide(empty, { identity: OPS, permission: 'list' }).rule, 'default-deny');
  t.equal(decide(empty, { identity: OPS, permission: 'get', keyName: 'k' }).allowed, false);
});

t.test('explain lists the rules considered, ending with the decider', async (t) => {
  const e = explain(policy, { identity: SVC, permission: 'unwrapKey', keyName: 'payments-eu' });
  t.same(e.decision, decide(policy, { identity: SVC, permission: 'unwrapKey', keyName: 'payments-eu' }));
  const rules = e.steps.map((s) => s.rule);
  t.same(rules, [
    'deny[0]',
    'deny[1]',
    'key:payments-*:grant[0]',
    'key:payments-*:grant[1]',
    'key:legacy',
    'binding[0]:reader',
    'binding[0]:crypto-user',
    'reason-missing:payments-*',
  ]);
  t.same(
    e.steps.map((s) => s.matched),
    [false, false, false, false, false, false, true, true],
  );
  t.equal(e.steps.at(-1)?.effect, 'deny');
  t.match(e.steps[0]?.detail, /does not cover unwrapKey/);

  const d = explain(policy, { identity: 'stranger', permission: 'list' });
  t.equal(d.steps.at(-1)?.rule, 'default-deny');
  t.match(
    d.steps.find((s) => s.rule === 'binding[0]')?.detail,
    /identity does not match/,
    'non-matching binding says why',
  );
});

t.test('decisions do not depend on earlier requests', async (t) => {
  const req: AuthzRequest = { identity: SVC, permission: 'wrapKey', keyName: 'payments-eu' };
  const first = decide(policy, req);
  decide(policy, { identity: 'x', permission: 'purge', keyName: 'prod-a' });
  t.same(decide(policy, req), first);
});

t.test('null optional fields count as absent; wrong types are invalid', async (t) => {
  const asNull = {
    identity: SVC,
    permission: 'list',
    keyName: null,
    reason: null,
  } as unknown as AuthzRequest;
  t.equal(decide(policy, asNull).rule, 'default-deny');
  const nullReason = { identity: SVC, permission: 'unwrapKey', keyName: 'payments-eu', reason: null };
  t.equal(decide(policy, nullReason as unknown as AuthzRequest).rule, 'reason-missing:payments-*');
  const numKey = { identity: OPS, permission: 'get', keyName: 7 } as unknown as AuthzRequest;
  t.equal(decide(policy, numKey).rule, 'invalid-request');
  const numReason = { identity: OPS, permission: 'get', keyName: 'k', reason: 7 } as unknown as AuthzRequest;
  t.equal(decide(policy, numReason).rule, 'invalid-request');
});

t.test(
  'callerClass: admin exactly when a matching binding or key grant gives a management permission',
  async (t) => {
    const p = parsePolicy(
      `
version: 1
roles:
  crypto-user: [wrapKey, unwrapKey, get, list]
  restorer: [restore]
  admin: ["*"]
bindings:
  - identity: "spiffe://hyokd.dev/svc/*"
    roles: [crypto-user]
  - identity: "spiffe://hyokd.dev/ops/**"
    roles: [admin]
    keys: ["prod-*"]
  - identity: "backup.example"
    roles: [crypto-user, restorer]
keys:
  - key: "payments-*"
    grants:
      - identity: "billing.example"
        permissions: [unwrapKey, get]
      - identity: "rotator.example"
        permissions: [update]
deny:
  - identity: "**"
    permissions: [purge]
`,
      'yaml',
    );
    for (const [identity, want] of [
      // A name that merely contains "admin" is no administrator …
      ['spiffe://hyokd.dev/svc/admin-dashboard', 'client'],
      // … and one that does not can be, through a key-scoped binding, a single role among
      // others, or a per-key grant.
      ['spiffe://hyokd.dev/ops/oncall/alice', 'admin'],
      ['backup.example', 'admin'],
      ['rotator.example', 'admin'],
      ['billing.example', 'client'],
      ['stranger.example', 'client'],
    ] as const) {
      t.equal(callerClass(p, identity), want, identity);
    }
    t.same(
      [...MANAGEMENT_PERMISSIONS].sort(),
      ['backup', 'create', 'delete', 'import', 'purge', 'recover', 'restore', 'update'],
      'the data plane’s permissions (and get, list) are not management',
    );
  },
);
