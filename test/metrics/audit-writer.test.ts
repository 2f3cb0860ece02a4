// The audit families read a real AuditWriter in a temp directory: group commits feed
// the latency and size histograms through onBatch, and a failing disk shows as
// unhealthy, failures and failed-closed records, then recovers.
import t from 'tap';
import { Metrics, readinessFrom } from '../../src/metrics/index.js';
import { FaultyFs, openWriter, request, tempDir } from '../audit/fixtures.js';
import { parseExposition, value } from './exposition.js';

t.test('audit families follow a real writer through an outage', async (t) => {
  const dir = tempDir(t);
  const fs = new FaultyFs();
  const metrics = new Metrics({ defaultMetrics: false });
  const w = await openWriter(dir, { fs, onBatch: (info) => metrics.observeAuditCommit(info) });
  t.teardown(() => w.close());
  metrics.setSources({ audit: () => w.stats() });
  const ready = readinessFrom({ hsm: () => 'ready', audit: () => w.healthy() });

  await Promise.all(Array.from({ length: 20 }, (_, i) => w.append(request(i))));
  let e = parseExposition(await metrics.text());
  const s = w.stats();
  t.equal(value(e, 'hyokd_audit_healthy'), 1);
  t.equal(value(e, 'hyokd_audit_records_total'), s.records);
  t.ok(s.records >= 21, 'twenty records and the start marker');
  t.equal(value(e, 'hyokd_audit_commits_total'), s.batches);
  t.equal(value(e, 'hyokd_audit_commit_records_count'), s.batches, 'one observation per durable commit');
  t.equal(value(e, 'hyokd_audit_commit_records_sum'), s.records, 'every durable record in a commit');
  t.ok(s.batches < s.records, 'group commit put several records in one write');
  t.equal(value(e, 'hyokd_audit_write_duration_seconds_count'), s.batches);
  const sumSeconds = value(e, 'hyokd_audit_write_duration_seconds_sum');
  t.ok(sumSeconds > 0 && sumSeconds < 10, `write time ${sumSeconds}s is in seconds, not ms`);
  t.equal(value(e, 'hyokd_audit_failures_total'), 0);
  t.same(ready(), { ready: true, reasons: [] });

  fs.writeError = 'ENOSPC';
  await t.rejects(w.append(request(100)), { code: 'AUDIT_UNAVAILABLE' });
  await t.rejects(w.append(request(101)), { code: 'AUDIT_UNAVAILABLE' });
  e = parseExposition(await metrics.text());
  t.equal(value(e, 'hyokd_audit_healthy'), 0, 'unhealthy: calls fail closed');
  t.equal(value(e, 'hyokd_audit_failures_total'), 1);
  t.equal(value(e, 'hyokd_audit_rejected_records_total'), 2);
  t.same(ready(), { ready: false, reasons: ['audit: unhealthy'] });

  fs.writeError = null;
  const t0 = Date.now();
  while (!w.healthy() && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 10));
  e = parseExposition(await metrics.text());
  t.equal(value(e, 'hyokd_audit_healthy'), 1, 'recovered by itself');
  t.equal(value(e, 'hyokd_audit_recoveries_total'), 1);
  t.same(ready(), { ready: true, reasons: [] });
});
