// Every metric family is exposed with sane values after a short run, fed by the call
// observer, the audit commit callback, a fake HSM counter source and a real SQLite store.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metrics, type AuditStatsLike } from '../../src/metrics/index.js';
import type { HsmCounters } from '../../src/hsm/types.js';
import { openSqliteStore, storePathIn, type NewKey } from '../../src/store/index.js';
import type { CallReport } from '../../src/server/observer.js';
import { find, parseExposition, value, type Exposition } from './exposition.js';

const T0 = Date.UTC(2026, 0, 1);
const DAY = 86_400_000;

function hsmCounters(over: Partial<HsmCounters> = {}): HsmCounters {
  return {
    state: 'ready',
    queueDepth: 3,
    queueCapacity: 1024,
    sessionsTotal: 4,
    sessionsBusy: 3,
    sessionsIdle: 1,
    ops: { decrypt: 120, encrypt: 40 },
    errors: { CKR_ENCRYPTED_DATA_INVALID: 2, HYOKD_QUEUE_FULL: 5 },
    reinitializations: 1,
    sessionReopens: 2,
    relogins: 3,
    handleResolves: 7,
    sessionCopiesDropped: 4,
    rejectedQueueFull: 5,
    ...over,
  };
}

function auditStats(over: Partial<AuditStatsLike> = {}): AuditStatsLike {
  return {
    healthy: true,
    records: 50,
    batches: 9,
    failures: 1,
    rejected: 4,
    pending: 2,
    checkpoints: 3,
    checkpointFailures: 0,
    rotations: 1,
    recoveries: 1,
    ...over,
  };
}

function call(over: Partial<CallReport> = {}): CallReport {
  return {
    service: 'hyok.v1.Hyok',
    method: 'Unwrap',
    status: 'OK',
    reason: '',
    identityClass: 'client',
    seconds: 0.002,
    hsmSeconds: 0.0004,
    items: 1,
    ...over,
  };
}

function aesKey(name: string, ckaId: string, extra: Partial<NewKey> = {}): NewKey {
  return {
    name,
    kind: 'aes-256',
    operations: ['wrapKey', 'unwrapKey'],
    origin: 'generated',
    retentionDays: 7,
    firstVersion: { ckaId, hsmLabel: `hyokd:${name}:1` },
    ...extra,
  };
}

async function scrape(m: Metrics): Promise<Exposition> {
  return parseExposition(await m.text());
}

/** The families the issue asks for, with their Prometheus type. */
const FAMILIES: Record<string, string> = {
  hyokd_requests_total: 'counter',
  hyokd_request_errors_total: 'counter',
  hyokd_requests_in_flight: 'gauge',
  hyokd_request_duration_seconds: 'histogram',
  hyokd_hsm_operation_duration_seconds: 'histogram',
  hyokd_request_batch_items: 'histogram',
  hyokd_hsm_state: 'gauge',
  hyokd_hsm_sessions: 'gauge',
  hyokd_hsm_queue_depth: 'gauge',
  hyokd_hsm_queue_capacity: 'gauge',
  hyokd_hsm_operations_total: 'counter',
  hyokd_hsm_errors_total: 'counter',
  hyokd_hsm_reinitializations_total: 'counter',
  hyokd_hsm_session_reopens_total: 'counter',
  hyokd_hsm_relogins_total: 'counter',
  hyokd_hsm_handle_resolves_total: 'counter',
  hyokd_hsm_session_copies_dropped_total: 'counter',
  hyokd_hsm_queue_rejections_total: 'counter',
  hyokd_audit_write_duration_seconds: 'histogram',
  hyokd_audit_commit_records: 'histogram',
  hyokd_audit_healthy: 'gauge',
  hyokd_audit_pending_records: 'gauge',
  hyokd_audit_records_total: 'counter',
  hyokd_audit_commits_total: 'counter',
  hyokd_audit_failures_total: 'counter',
  hyokd_audit_rejected_records_total: 'counter',
  hyokd_audit_checkpoints_total: 'counter',
  hyokd_audit_checkpoint_failures_total: 'counter',
  hyokd_audit_rotations_total: 'counter',
  hyokd_audit_recoveries_total: 'counter',
  hyokd_keys: 'gauge',
  hyokd_keys_expiring: 'gauge',
  hyokd_keys_expired: 'gauge',
  hyokd_quorum_pending_requests: 'gauge',
  hyokd_build_info: 'gauge',
  hyokd_metrics_source_errors_total: 'counter',
};

t.test('a short run exposes every family with sane values', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hyokd-metrics-'));
  const store = openSqliteStore({ path: storePathIn(dir), clock: () => T0 });
  t.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await store.createKey(aesKey('alpha', 'a1'));
  await store.createKey(aesKey('beta', 'b1', { state: 'disabled', rotation: { expiresAt: T0 + 3 * DAY } }));
  await store.createKey(aesKey('gamma', 'c1', { rotation: { expiresAt: T0 + 20 * DAY } }));
  await store.createKey(aesKey('delta', 'd1', { rotation: { expiresAt: T0 - DAY } }));
  await store.createKey(aesKey('gone', 'e1', { rotation: { expiresAt: T0 + DAY / 2 } }));
  await store.softDelete('gone');
  await store.createPendingRequest({ op: 'purge', keyName: 'alpha', requester: 'ops', expiresAt: T0 + DAY });
  const done = await store.createPendingRequest({
    op: 'purge',
    keyName: 'beta',
    requester: 'ops',
    expiresAt: T0 + DAY,
  });
  await store.updatePendingRequest(done.id, 'pending', { state: 'cancelled' });

  const m = new Metrics({
    version: '1.2.3',
    commit: 'abc123',
    now: () => T0,
    sources: { hsm: () => hsmCounters(), audit: () => auditStats(), store },
  });

  m.callStarted('hyok.v1.Hyok', 'Unwrap');
  m.callStarted('hyok.v1.Hyok', 'Unwrap');
  m.callStarted('hyok.v1.Hyok', 'BatchUnwrap');
  m.callFinished(call({ seconds: 0.0002 }));
  m.callFinished(call({ method: 'BatchUnwrap', items: 300, seconds: 0.03, hsmSeconds: 0.02 }));
  m.callStarted('hyok.admin.v1.KeyAdmin', 'CreateKey');
  m.callFinished(
    call({
      service: 'hyok.admin.v1.KeyAdmin',
      method: 'CreateKey',
      status: 'PERMISSION_DENIED',
      reason: 'PERMISSION_DENIED',
      identityClass: 'admin',
      seconds: 0.001,
      hsmSeconds: undefined,
    }),
  );
  m.observeAuditCommit({ records: 12, latencyMs: 1.5 });
  m.observeAuditCommit({ records: 1, latencyMs: 0.3 });

  const e = await scrape(m);
  for (const [name, type] of Object.entries(FAMILIES)) {
    t.equal(e.types.get(name), type, `${name} is a ${type}`);
    t.ok(e.helps.get(name), `${name} has help text`);
    t.ok(find(e, name).length + find(e, `${name}_count`).length > 0, `${name} has samples`);
  }
  for (const [name, type] of e.types) {
    if (!name.startsWith('hyokd_')) continue;
    t.equal(name.endsWith('_total'), type === 'counter', `${name}: _total exactly on counters`);
  }

  // calls
  t.equal(value(e, 'hyokd_requests_total', { method: 'Unwrap', status: 'OK', identity_class: 'client' }), 1);
  t.equal(value(e, 'hyokd_requests_total', { method: 'BatchUnwrap', status: 'OK' }), 1);
  t.equal(
    value(e, 'hyokd_requests_total', {
      service: 'hyok.admin.v1.KeyAdmin',
      method: 'CreateKey',
      status: 'PERMISSION_DENIED',
      identity_class: 'admin',
    }),
    1,
  );
  t.equal(value(e, 'hyokd_request_errors_total', { method: 'CreateKey', reason: 'PERMISSION_DENIED' }), 1);
  t.equal(find(e, 'hyokd_request_errors_total', { method: 'Unwrap' }).length, 0, 'successes are not errors');
  t.equal(value(e, 'hyokd_requests_in_flight', { method: 'Unwrap' }), 1, 'two started, one finished');
  t.equal(value(e, 'hyokd_requests_in_flight', { method: 'BatchUnwrap' }), 0);
  t.equal(value(e, 'hyokd_requests_in_flight', { method: 'CreateKey' }), 0);
  t.equal(value(e, 'hyokd_request_duration_seconds_count', { method: 'Unwrap', outcome: 'ok' }), 1);
  t.equal(
    value(e, 'hyokd_request_duration_seconds_bucket', { method: 'Unwrap', outcome: 'ok', le: '0.0001' }),
    0,
  );
  t.equal(
    value(e, 'hyokd_request_duration_seconds_bucket', { method: 'Unwrap', outcome: 'ok', le: '0.00025' }),
    1,
    '200 µs lands in the 250 µs bucket',
  );
  t.equal(value(e, 'hyokd_request_duration_seconds_count', { method: 'CreateKey', outcome: 'error' }), 1);
  t.equal(
    value(e, 'hyokd_request_duration_seconds_bucket', { method: 'CreateKey', le: '5' }),
    1,
    'buckets reach 5 s',
  );
  t.equal(value(e, 'hyokd_hsm_operation_duration_seconds_count', { method: 'BatchUnwrap' }), 1);
  t.equal(value(e, 'hyokd_hsm_operation_duration_seconds_sum', { method: 'BatchUnwrap' }), 0.02);
  t.equal(
    find(e, 'hyokd_hsm_operation_duration_seconds_count', { method: 'CreateKey' }).length,
    0,
    'no HSM step, no sample',
  );
  t.equal(value(e, 'hyokd_request_batch_items_sum', { method: 'BatchUnwrap' }), 300);
  t.equal(value(e, 'hyokd_request_batch_items_bucket', { method: 'BatchUnwrap', le: '200' }), 0);
  t.equal(value(e, 'hyokd_request_batch_items_bucket', { method: 'BatchUnwrap', le: '500' }), 1);

  // HSM
  t.equal(value(e, 'hyokd_hsm_state', { state: 'ready' }), 1);
  t.equal(value(e, 'hyokd_hsm_state', { state: 'recovering' }), 0);
  t.equal(value(e, 'hyokd_hsm_state', { state: 'closed' }), 0);
  t.equal(value(e, 'hyokd_hsm_sessions', { state: 'busy' }), 3);
  t.equal(value(e, 'hyokd_hsm_sessions', { state: 'idle' }), 1);
  t.equal(value(e, 'hyokd_hsm_queue_depth'), 3);
  t.equal(value(e, 'hyokd_hsm_queue_capacity'), 1024);
  t.equal(value(e, 'hyokd_hsm_operations_total', { op: 'decrypt' }), 120);
  t.equal(value(e, 'hyokd_hsm_operations_total', { op: 'encrypt' }), 40);
  t.equal(value(e, 'hyokd_hsm_errors_total', { code: 'CKR_ENCRYPTED_DATA_INVALID' }), 2);
  t.equal(value(e, 'hyokd_hsm_errors_total', { code: 'HYOKD_QUEUE_FULL' }), 5);
  t.equal(value(e, 'hyokd_hsm_reinitializations_total'), 1);
  t.equal(value(e, 'hyokd_hsm_session_reopens_total'), 2);
  t.equal(value(e, 'hyokd_hsm_relogins_total'), 3);
  t.equal(value(e, 'hyokd_hsm_handle_resolves_total'), 7);
  t.equal(value(e, 'hyokd_hsm_session_copies_dropped_total'), 4);
  t.equal(value(e, 'hyokd_hsm_queue_rejections_total'), 5);

  // audit
  t.equal(value(e, 'hyokd_audit_write_duration_seconds_count'), 2);
  t.equal(value(e, 'hyokd_audit_write_duration_seconds_sum'), 0.0018);
  t.equal(value(e, 'hyokd_audit_write_duration_seconds_bucket', { le: '0.0005' }), 1, '0.3 ms in seconds');
  t.equal(value(e, 'hyokd_audit_commit_records_sum'), 13);
  t.equal(value(e, 'hyokd_audit_commit_records_bucket', { le: '8' }), 1);
  t.equal(value(e, 'hyokd_audit_commit_records_bucket', { le: '16' }), 2);
  t.equal(value(e, 'hyokd_audit_healthy'), 1);
  t.equal(value(e, 'hyokd_audit_pending_records'), 2);
  t.equal(value(e, 'hyokd_audit_records_total'), 50);
  t.equal(value(e, 'hyokd_audit_commits_total'), 9);
  t.equal(value(e, 'hyokd_audit_failures_total'), 1);
  t.equal(value(e, 'hyokd_audit_rejected_records_total'), 4);
  t.equal(value(e, 'hyokd_audit_checkpoints_total'), 3);
  t.equal(value(e, 'hyokd_audit_checkpoint_failures_total'), 0);
  t.equal(value(e, 'hyokd_audit_rotations_total'), 1);
  t.equal(value(e, 'hyokd_audit_recoveries_total'), 1);

  // store
  t.equal(value(e, 'hyokd_keys', { state: 'enabled' }), 3);
  t.equal(value(e, 'hyokd_keys', { state: 'disabled' }), 1);
  t.equal(value(e, 'hyokd_keys', { state: 'soft-deleted' }), 1);
  t.equal(value(e, 'hyokd_keys_expiring', { within: '1d' }), 0, 'the soft-deleted key does not count');
  t.equal(value(e, 'hyokd_keys_expiring', { within: '7d' }), 1);
  t.equal(value(e, 'hyokd_keys_expiring', { within: '30d' }), 2);
  t.equal(value(e, 'hyokd_keys_expired'), 1);
  t.equal(value(e, 'hyokd_quorum_pending_requests'), 1, 'only pending requests count');

  // the daemon
  t.equal(
    value(e, 'hyokd_build_info', { version: '1.2.3', commit: 'abc123', node_version: process.version }),
    1,
  );
  t.equal(value(e, 'hyokd_metrics_source_errors_total', { source: 'store' }), 0);
  t.ok(
    e.types.has('process_cpu_seconds_total') || e.types.has('process_cpu_user_seconds_total'),
    'process metrics',
  );
  t.ok(
    [...e.types.keys()].some((n) => n.startsWith('nodejs_')),
    'Node.js metrics',
  );
});

t.test(
  'counters read from a source follow it: a second scrape does not add again, a drop is a reset',
  async (t) => {
    let c = hsmCounters();
    let a = auditStats();
    const m = new Metrics({ defaultMetrics: false, sources: { hsm: () => c, audit: () => a } });
    const first = await scrape(m);
    const again = await scrape(m);
    t.equal(
      value(again, 'hyokd_hsm_operations_total', { op: 'decrypt' }),
      value(first, 'hyokd_hsm_operations_total', { op: 'decrypt' }),
    );
    t.equal(value(again, 'hyokd_hsm_reinitializations_total'), 1);
    t.equal(value(again, 'hyokd_audit_failures_total'), 1);
    c = hsmCounters({ ops: { decrypt: 121 }, reinitializations: 4, state: 'recovering', queueDepth: 0 });
    a = auditStats({ failures: 6, healthy: false });
    const later = await scrape(m);
    t.equal(value(later, 'hyokd_hsm_operations_total', { op: 'decrypt' }), 121);
    t.equal(
      find(later, 'hyokd_hsm_operations_total', { op: 'encrypt' }).length,
      0,
      'an op the source no longer reports is gone',
    );
    t.equal(value(later, 'hyokd_hsm_reinitializations_total'), 4);
    t.equal(value(later, 'hyokd_hsm_state', { state: 'recovering' }), 1);
    t.equal(value(later, 'hyokd_hsm_state', { state: 'ready' }), 0);
    t.equal(value(later, 'hyokd_hsm_queue_depth'), 0);
    t.equal(value(later, 'hyokd_audit_failures_total'), 6);
    t.equal(value(later, 'hyokd_audit_healthy'), 0);
    c = hsmCounters({ ops: { decrypt: 2 } });
    t.equal(
      value(await scrape(m), 'hyokd_hsm_operations_total', { op: 'decrypt' }),
      2,
      'a new backend starts from zero',
    );
  },
);

t.test('without sources the scrape works and says nothing is ready', async (t) => {
  const m = new Metrics({ defaultMetrics: false });
  const e = await scrape(m);
  for (const s of ['ready', 'recovering', 'closed']) t.equal(value(e, 'hyokd_hsm_state', { state: s }), 0);
  t.equal(value(e, 'hyokd_audit_healthy'), 0);
  t.equal(find(e, 'hyokd_hsm_sessions').length, 0);
  t.equal(find(e, 'hyokd_hsm_errors_total').length, 0);
  t.equal(find(e, 'hyokd_hsm_operations_total').length, 0);
  t.equal(find(e, 'hyokd_keys').length, 0);
  // prom-client always shows a family without labels; unwired, it reads 0.
  t.equal(value(e, 'hyokd_hsm_queue_depth'), 0);
  t.equal(value(e, 'hyokd_quorum_pending_requests'), 0);
  t.equal(value(e, 'hyokd_audit_records_total'), 0);
  t.notOk(
    [...e.types.keys()].some((n) => n.startsWith('nodejs_')),
    'defaultMetrics: false leaves Node.js metrics out',
  );

  m.setSources({ hsm: () => hsmCounters(), audit: () => auditStats() });
  const wired = await scrape(m);
  t.equal(value(wired, 'hyokd_hsm_state', { state: 'ready' }), 1, 'wired after start');
  t.equal(value(wired, 'hyokd_audit_healthy'), 1);
  m.setSources({ hsm: () => undefined });
  const gone = await scrape(m);
  t.equal(
    value(gone, 'hyokd_hsm_state', { state: 'ready' }),
    0,
    'a provider returning undefined (closed backend)',
  );
  t.equal(value(gone, 'hyokd_audit_healthy'), 1, 'other sources are kept');
});

t.test('a source that throws is counted and skipped; the scrape still succeeds', async (t) => {
  const m = new Metrics({
    defaultMetrics: false,
    sources: {
      hsm: () => {
        throw new Error('native engine gone');
      },
      audit: () => {
        throw new Error('writer gone');
      },
      store: {
        listKeys: () => Promise.reject(new Error('database is locked')),
        listPendingRequests: () => Promise.reject(new Error('database is locked')),
      },
    },
  });
  const text = await m.text();
  t.notMatch(text, /native engine gone|writer gone|database is locked/, 'error text never appears');
  const e = parseExposition(text);
  t.ok(value(e, 'hyokd_metrics_source_errors_total', { source: 'hsm' }) >= 1);
  t.ok(value(e, 'hyokd_metrics_source_errors_total', { source: 'audit' }) >= 1);
  t.ok(value(e, 'hyokd_metrics_source_errors_total', { source: 'store' }) >= 1);
  t.equal(value(e, 'hyokd_hsm_state', { state: 'ready' }), 0);
  t.equal(find(e, 'hyokd_keys').length, 0);
});

t.test('bad numbers from callers or sources do not produce bad samples', async (t) => {
  const m = new Metrics({
    defaultMetrics: false,
    sources: {
      hsm: () => hsmCounters({ queueDepth: NaN, sessionsBusy: -3, ops: { decrypt: -1 }, relogins: Infinity }),
    },
  });
  m.callFinished(call({ seconds: -1, hsmSeconds: NaN, items: Number.NaN }));
  m.callFinished(call({ method: 'Wrap' }));
  m.observeAuditCommit({ records: -2, latencyMs: Number.POSITIVE_INFINITY });
  const e = await scrape(m);
  t.equal(value(e, 'hyokd_requests_total', { method: 'Unwrap' }), 1, 'the call still counts');
  t.equal(
    find(e, 'hyokd_request_duration_seconds_count', { method: 'Unwrap' }).length,
    0,
    'a negative latency is not observed',
  );
  t.equal(find(e, 'hyokd_hsm_operation_duration_seconds_count', { method: 'Unwrap' }).length, 0);
  t.equal(find(e, 'hyokd_request_batch_items_count', { method: 'Unwrap' }).length, 0);
  t.equal(value(e, 'hyokd_request_duration_seconds_count', { method: 'Wrap' }), 1);
  t.equal(value(e, 'hyokd_audit_write_duration_seconds_count'), 0);
  t.equal(value(e, 'hyokd_audit_commit_records_count'), 0);
  t.equal(value(e, 'hyokd_hsm_queue_depth'), 0);
  t.equal(value(e, 'hyokd_hsm_sessions', { state: 'busy' }), 0);
  t.equal(value(e, 'hyokd_hsm_operations_total', { op: 'decrypt' }), 0);
  t.equal(value(e, 'hyokd_hsm_relogins_total'), 0);
  for (const s of e.samples)
    t.ok(Number.isFinite(s.value) || s.labels.le === '+Inf', `${s.name} is a number`);
});

t.test('a finish without a start does not drive in-flight below zero', async (t) => {
  const m = new Metrics({ defaultMetrics: false });
  m.callFinished(call());
  m.callFinished(call());
  m.callStarted('hyok.v1.Hyok', 'Unwrap');
  const e = await scrape(m);
  t.equal(value(e, 'hyokd_requests_in_flight', { method: 'Unwrap' }), 1);
});

t.test('two registries do not share state', async (t) => {
  const a = new Metrics({ defaultMetrics: false });
  const b = new Metrics({ defaultMetrics: false });
  a.callFinished(call());
  t.equal(find(await scrape(b), 'hyokd_requests_total').length, 0);
  t.equal(value(await scrape(a), 'hyokd_requests_total', { method: 'Unwrap' }), 1);
});
