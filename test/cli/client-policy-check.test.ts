// `hyokd policy check FILE`: offline validation of real policy files in a temp dir, and
// the local explanation of a hypothetical request.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runCli, tempDir } from './client-harness.js';

const GOOD = `
version: 1
roles:
  crypto-user: [wrapKey, unwrapKey]
  admin: ["*"]
bindings:
  - identity: "spiffe://hyokd.dev/svc/*"
    roles: [crypto-user]
    keys: ["payments-*"]
  - identity: "spiffe://hyokd.dev/ops/**"
    roles: [admin]
keys:
  - key: "payments-*"
    reasons:
      allowed: [customer-request]
      missing: deny
      permissions: [unwrapKey]
deny:
  - identity: "**"
    permissions: [purge]
    keys: ["prod-*"]
`;

const BAD = `
version: 2
roles:
  crypto-user: [wrapKey, fly]
bindings:
  - identity: "spiffe://hyokd.dev/svc/*"
    roles: [nobody]
`;

t.test('a valid file: OK, exit 0', async (t) => {
  const dir = tempDir(t);
  const f = join(dir, 'policy.yaml');
  writeFileSync(f, GOOD);
  const r = await runCli(['policy', 'check', f]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `${f}: OK\n`);
  const j = await runCli(['policy', 'check', f, '--json']);
  t.same(JSON.parse(j.stdout), { file: f, valid: true, problems: [] });
  const jf = join(dir, 'policy.json');
  writeFileSync(
    jf,
    JSON.stringify({ version: 1, roles: { r: ['get'] }, bindings: [{ identity: 'a', roles: ['r'] }] }),
  );
  t.equal((await runCli(['policy', 'check', jf])).code, 0, 'JSON files too');
});

t.test('an invalid file: every problem listed with its path, exit 1', async (t) => {
  const dir = tempDir(t);
  const f = join(dir, 'policy.yml');
  writeFileSync(f, BAD);
  const r = await runCli(['policy', 'check', f]);
  t.equal(r.code, 1);
  t.match(r.stdout, new RegExp(`^${f.replace(/[.]/g, '\\.')}: INVALID \\(\\d+ problems?\\)`));
  t.match(r.stdout, /- version: version must be 1/);
  t.match(r.stdout, /- roles\.crypto-user\[1\]: unknown permission "fly"/);
  const j = await runCli(['policy', 'check', f, '--json']);
  t.equal(j.code, 1);
  const out = JSON.parse(j.stdout) as { valid: boolean; problems: string[] };
  t.equal(out.valid, false);
  t.ok(out.problems.length >= 2);

  writeFileSync(f, 'version: 1\nroles: [unclosed\n');
  const syn = await runCli(['policy', 'check', f]);
  t.equal(syn.code, 1);
  t.match(syn.stdout, /\(syntax\)/);

  // Cross-field problems show once the shape is valid.
  writeFileSync(f, 'version: 1\nroles:\n  r: [get]\nbindings:\n  - identity: a\n    roles: [nobody]\n');
  const cross = await runCli(['policy', 'check', f]);
  t.equal(cross.code, 1);
  t.match(cross.stdout, /bindings\[0\]\.roles\[0\]: unknown role "nobody"/);
});

t.test('check with a request explains the local decision', async (t) => {
  const dir = tempDir(t);
  const f = join(dir, 'policy.yaml');
  writeFileSync(f, GOOD);
  const allow = await runCli([
    'policy',
    'check',
    f,
    '--identity',
    'spiffe://hyokd.dev/svc/api',
    '--permission',
    'unwrapKey',
    '--key',
    'payments-eu',
    '--reason',
    'customer-request',
  ]);
  t.equal(allow.code, 0, allow.stderr);
  t.match(allow.stdout, /^ALLOWED by binding\[0\]:crypto-user/m);
  const noReason = await runCli([
    'policy',
    'check',
    f,
    '--identity',
    'spiffe://hyokd.dev/svc/api',
    '--permission',
    'unwrapKey',
    '--key',
    'payments-eu',
    '--json',
  ]);
  t.equal(noReason.code, 0, 'the file is valid; the decision is the output, not the exit code');
  const j = JSON.parse(noReason.stdout) as {
    decision: { allowed: boolean; rule: string };
    steps: { rule: string }[];
  };
  t.same(j.decision.allowed, false);
  t.equal(j.decision.rule, 'reason-missing:payments-*');
  t.ok(j.steps.length > 0);
  const deny = await runCli([
    'policy',
    'check',
    f,
    '--identity',
    'spiffe://hyokd.dev/ops/root',
    '--permission',
    'purge',
    '--key',
    'prod-db',
  ]);
  t.match(deny.stdout, /^DENIED by deny\[0\]/m);
  const dflt = await runCli(['policy', 'check', f, '--identity', 'stranger', '--permission', 'list']);
  t.match(dflt.stdout, /^DENIED by default-deny/m);
  const badPerm = await runCli(['policy', 'check', f, '--identity', 'x', '--permission', 'fly']);
  t.equal(badPerm.code, 2);
  t.match(badPerm.stderr, /--permission: unknown permission "fly"/);
});
