// Loading policy files and reloading: the old policy stays when the new one is bad.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadPolicyFile, PolicyHolder, policyFormatOf } from '../../src/policy/holder.js';
import { parsePolicy, PolicyError } from '../../src/policy/parse.js';

const dir = mkdtempSync(join(tmpdir(), 'hyokd-policy-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const v1 = `version: 1
roles: { user: [wrapKey] }
bindings: [{ identity: "spiffe://d/a", roles: [user] }]
`;
const v2 = `version: 1
roles: { user: [wrapKey] }
bindings: [{ identity: "spiffe://d/b", roles: [user] }]
`;
const A = { identity: 'spiffe://d/a', permission: 'wrapKey' as const, keyName: 'k' };
const B = { identity: 'spiffe://d/b', permission: 'wrapKey' as const, keyName: 'k' };

t.test('format from the extension', async (t) => {
  t.equal(policyFormatOf('p.yaml'), 'yaml');
  t.equal(policyFormatOf('p.YML'), 'yaml');
  t.equal(policyFormatOf('p.json'), 'json');
  t.throws(() => policyFormatOf('p.txt'), PolicyError);
  t.throws(() => policyFormatOf('policy'), /no extension/);
});

t.test('loadPolicyFile reads YAML and JSON; missing files are PolicyErrors without the path', async (t) => {
  const y = join(dir, 'a.yaml');
  writeFileSync(y, v1);
  t.equal((await loadPolicyFile(y)).document.bindings[0]?.identity, 'spiffe://d/a');
  const j = join(dir, 'a.json');
  writeFileSync(j, JSON.stringify({ version: 1, roles: { r: ['get'] } }));
  t.same((await loadPolicyFile(j)).document.roles, { r: ['get'] });
  const missing = join(dir, 'missing.yaml');
  await t.rejects(loadPolicyFile(missing), { name: 'PolicyError', message: /ENOENT/ });
  await loadPolicyFile(missing).catch((err: Error) =>
    t.notMatch(err.message, dir, 'no machine path in the error'),
  );
});

t.test('reload swaps only a good policy and keeps the old one on error', async (t) => {
  const path = join(dir, 'live.yaml');
  writeFileSync(path, v1);
  const holder = await PolicyHolder.fromFile(path);
  t.equal(holder.generation, 1);
  t.equal(holder.decide(A).allowed, true);
  t.equal(holder.decide(B).allowed, false);

  writeFileSync(path, 'version: 1\nroles: { user: [teleport] }\n');
  const bad = await holder.reload();
  t.same(bad.ok, false);
  t.match(bad, { ok: false, generation: 1, problems: [/roles\.user\[0\]: unknown permission "teleport"/] });
  t.equal(holder.decide(A).allowed, true, 'old policy still in force');
  t.equal(holder.generation, 1);

  writeFileSync(path, 'version: 1\nroles: [unclosed\n');
  t.match(await holder.reload(), { ok: false, problems: [/^\(syntax\)/] });
  t.equal(holder.decide(A).allowed, true);

  rmSync(path);
  t.match(await holder.reload(), { ok: false, problems: [/ENOENT/] });
  t.equal(holder.decide(A).allowed, true);

  writeFileSync(path, v2);
  t.same(await holder.reload(), { ok: true, generation: 2 });
  t.equal(holder.decide(A).allowed, false, 'new policy in force');
  t.equal(holder.decide(B).allowed, true);
});

t.test('replace (admin API) follows the same rule', async (t) => {
  const path = join(dir, 'r.yaml');
  writeFileSync(path, v1);
  const holder = new PolicyHolder(await loadPolicyFile(path));
  const before = holder.current;
  t.match(await holder.replace('{"version": 3}', 'json'), { ok: false, problems: [/^version: /] });
  t.equal(holder.current, before, 'same object kept');
  t.same(await holder.replace(v2, 'yaml'), { ok: true, generation: 2 });
  t.not(holder.current, before);
  t.equal(holder.decide(B).allowed, true);
  t.match(await holder.reload(), { ok: false, problems: [/not loaded from a file/] });
});

t.test('fromFile refuses a bad first policy', async (t) => {
  const path = join(dir, 'first.json');
  writeFileSync(path, '{"version": 1, "deny": [{"identity": "x"}]}');
  await t.rejects(PolicyHolder.fromFile(path), { name: 'PolicyError', message: /deny\[0\]\.permissions/ });
});

t.test('callerClass follows the live policy across a swap', async (t) => {
  const asUser =
    'version: 1\nroles: { user: [unwrapKey] }\nbindings: [{ identity: "spiffe://d/a", roles: [user] }]\n';
  const asAdmin =
    'version: 1\nroles: { ops: [create] }\nbindings: [{ identity: "spiffe://d/a", roles: [ops] }]\n';
  const holder = new PolicyHolder(parsePolicy(asUser, 'yaml'));
  t.equal(holder.callerClass('spiffe://d/a'), 'client');
  t.equal(holder.callerClass('spiffe://d/a'), 'client', 'asked again (cached)');
  t.match(await holder.replace(asAdmin, 'yaml'), { ok: true });
  t.equal(holder.callerClass('spiffe://d/a'), 'admin', 'not the answer cached under the old policy');
  t.match(await holder.replace('version: 1\nroles: [unclosed\n', 'yaml'), { ok: false });
  t.equal(holder.callerClass('spiffe://d/a'), 'admin', 'a rejected document changes nothing');
});
