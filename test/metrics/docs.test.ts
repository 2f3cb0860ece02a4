// docs/alerts.yml and docs/dashboard.md name only metrics hyokd exports, and the
// dashboard describes every hyokd family, so the documents cannot drift from the code.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { Metrics } from '../../src/metrics/index.js';
import { parseExposition } from './exposition.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const alertsText = readFileSync(`${root}docs/alerts.yml`, 'utf8');
const dashboard = readFileSync(`${root}docs/dashboard.md`, 'utf8');

const exported = parseExposition(await new Metrics().text()).types;
const hyokdFamilies = [...exported.keys()].filter((n) => n.startsWith('hyokd_'));

/** Metric names in a text, histogram series folded into their family. */
function namesIn(text: string, prefix: RegExp): Set<string> {
  const out = new Set<string>();
  for (const m of text.matchAll(prefix)) {
    const n = m[0];
    const base = n.replace(/_(bucket|count|sum)$/, '');
    out.add(exported.get(base) === 'histogram' ? base : n);
  }
  return out;
}

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: string };
  annotations: { summary: string };
}

t.test('alerts.yml is well-formed and names only exported metrics', async (t) => {
  const doc = parse(alertsText) as { groups: { name: string; rules: Rule[] }[] };
  const rules = doc.groups.flatMap((g) => g.rules);
  t.ok(rules.length >= 20, `${rules.length} rules`);
  const names = new Set<string>();
  for (const r of rules) {
    t.match(r.alert, /^Hyokd[A-Za-z]+$/, `${r.alert} is named`);
    t.ok(!names.has(r.alert), `${r.alert} is unique`);
    names.add(r.alert);
    t.ok(['page', 'ticket'].includes(r.labels?.severity), `${r.alert} has a severity`);
    t.ok(r.annotations?.summary, `${r.alert} has a summary`);
    t.ok(/hyokd_/.test(r.expr), `${r.alert} uses a hyokd metric`);
    for (const n of namesIn(r.expr, /\bhyokd_[a-z_]+/g))
      t.ok(exported.has(n), `${r.alert}: ${n} is exported`);
  }
  for (const must of [
    'HyokdHsmNotReady',
    'HyokdAuditUnavailable',
    'HyokdServerErrorRate',
    'HyokdDataPlaneLatencyHigh',
    'HyokdHsmQueueSaturated',
    'HyokdResourceExhausted',
    'HyokdHsmReinitializationStorm',
    'HyokdKeysExpiringSoon',
  ]) {
    t.ok(names.has(must), `${must} is there`);
  }
});

t.test('the dashboard names only exported metrics and describes every hyokd family', async (t) => {
  const named = namesIn(dashboard, /\b(?:hyokd|process|nodejs)_[a-z0-9_]+/g);
  for (const n of named) t.ok(exported.has(n), `${n} is exported`);
  for (const f of hyokdFamilies) t.ok(named.has(f), `${f} is on the dashboard`);
});
