// hyokd's Prometheus metrics: one registry per daemon, fed by the server's call
// observer, by the audit writer's batch callback, and read from the HSM backend, the
// audit writer and the metadata store when scraped.
//
// Naming follows Prometheus conventions: `hyokd_` prefix, base units (seconds), `_total`
// on counters. Every label value goes through src/metrics/labels.ts, so each label comes
// from a fixed or capped set (see the comment on each family). No identity, key name,
// PIN, or error text ever becomes a label value.
//
// Cumulative counts kept elsewhere (the native engine's HsmCounters, the audit writer's
// AuditStats) are exposed as real counters (`_total`, TYPE counter): at scrape time the
// counter is reset and set to the source's running total. If the source restarts from
// zero (a new backend object), the exposed value drops, which Prometheus' rate() and
// increase() read as a counter reset, exactly as for a restarted process. The
// alternative, gauges without `_total`, would make rate() wrong across such drops.
//
// Providers may return undefined (not wired yet, or closed): their labelled families
// then show no series, families without labels show 0 (prom-client always exposes
// those), the state gauges show 0 for every state, and the scrape still succeeds. A provider that
// throws is counted in `hyokd_metrics_source_errors_total{source}` and skipped.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CallObserver, CallReport } from '../server/observer.js';
import type { HsmCounters } from '../hsm/types.js';
import type { KeyRecord, MetadataStore } from '../store/types.js';
import {
  BoundedLabelSet,
  HSM_ERROR_CODE_SHAPE,
  HSM_STATES,
  KEY_STATES,
  MethodLabels,
  hsmOpLabel,
  identityClassLabel,
  reasonLabel,
  statusLabel,
  type MethodLabelOptions,
} from './labels.js';

/** 100 µs … 5 s: an AES-GCM unwrap on a local HSM is ~50–500 µs, a network HSM or a queue wait is ms, a stuck one is seconds. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

/** Items per batch call or stream message (1 for unary). */
export const BATCH_ITEM_BUCKETS: readonly number[] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

/** Records per audit group commit (the writer's default maximum is 4096). */
export const AUDIT_BATCH_BUCKETS: readonly number[] = [
  1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
];

/** Key expiry windows for `hyokd_keys_expiring{within}`. */
export const EXPIRY_WINDOWS: ReadonlyArray<readonly [label: string, ms: number]> = [
  ['1d', 86_400_000],
  ['7d', 7 * 86_400_000],
  ['30d', 30 * 86_400_000],
];

/** The subset of the audit writer's `AuditStats` read at scrape time (structural, so no import of the writer). */
export interface AuditStatsLike {
  healthy: boolean;
  records: number;
  batches: number;
  failures: number;
  rejected: number;
  pending: number;
  checkpoints?: number;
  checkpointFailures?: number;
  rotations?: number;
  recoveries?: number;
}

/** What the audit writer's `onBatch` callback reports. */
export interface AuditCommitInfo {
  records: number;
  latencyMs: number;
}

/** The store methods read at scrape time. */
export type MetricsStore = Pick<MetadataStore, 'listKeys' | 'listPendingRequests'>;

export interface MetricsSources {
  hsm?: () => HsmCounters | undefined;
  audit?: () => AuditStatsLike | undefined;
  store?: MetricsStore;
}

export interface MetricsOptions extends MethodLabelOptions {
  /** Reported in `hyokd_build_info{version}`. Default 'unknown'. */
  version?: string;
  /** Also a bounded label of build info (a git commit). Default ''. */
  commit?: string;
  /** Register prom-client's process and Node.js metrics (standard names). Default true. */
  defaultMetrics?: boolean;
  /** Sources read at scrape time; can also be set later with `setSources`. */
  sources?: MetricsSources;
  /** Milliseconds since the epoch, for key expiry. Default Date.now. */
  now?: () => number;
}

type Source = 'hsm' | 'audit' | 'store';

export class Metrics implements CallObserver {
  readonly registry: Registry;
  #sources: MetricsSources;
  readonly #now: () => number;
  readonly #methods: MethodLabels;
  /** Capped at 128 codes: PKCS#11 defines fewer than 100 return values. */
  readonly #hsmCodes = new BoundedLabelSet(HSM_ERROR_CODE_SHAPE, 128);
  /** In-flight calls per "service\0method" label pair; clamped at 0 so a finish without a start cannot go negative. */
  readonly #inFlight = new Map<string, number>();
  #keysCache: { at: number; list: Promise<KeyRecord[] | undefined> } | undefined;

  readonly #requests: Counter<'service' | 'method' | 'status' | 'identity_class'>;
  readonly #errors: Counter<'service' | 'method' | 'reason'>;
  readonly #duration: Histogram<'service' | 'method' | 'outcome'>;
  readonly #hsmDuration: Histogram<'service' | 'method'>;
  readonly #items: Histogram<'service' | 'method'>;
  readonly #auditWrite: Histogram;
  readonly #auditBatch: Histogram;
  readonly #sourceErrors: Counter<'source'>;

  constructor(opts: MetricsOptions = {}) {
    this.registry = new Registry();
    this.#sources = { ...opts.sources };
    this.#now = opts.now ?? Date.now;
    this.#methods = new MethodLabels(opts);
    const registers = [this.registry];
    // Collect callbacks run with `this` bound to their metric; they reach the sources
    // through these arrow functions.
    const hsm = (): HsmCounters | undefined => this.#read('hsm');
    const audit = (): AuditStatsLike | undefined => this.#read('audit');
    const listKeys = (): Promise<KeyRecord[] | undefined> => this.#keys();
    const pending = (): Promise<unknown[] | undefined> =>
      this.#readAsync('store', (s) => s.listPendingRequests({ state: 'pending' }));
    const clock = (): number => this.#now();
    const hsmCode = (k: string): string => this.#hsmCodes.label(k);
    const inFlight = this.#inFlight;

    // ---- calls -------------------------------------------------------------------------
    // service/method: allowlist from proto/ (or capped by shape, labels.ts); status: the
    // 17 gRPC names; identity_class: 4 fixed classes. At most ~28 × 17 × 4 series, and in
    // practice far fewer since most methods see few statuses.
    this.#requests = new Counter({
      name: 'hyokd_requests_total',
      help: 'Calls finished, by service, method, gRPC status and caller identity class.',
      labelNames: ['service', 'method', 'status', 'identity_class'],
      registers,
    });
    // reason: a code of the error registry (src/errors.ts) or `other`, never error text.
    this.#errors = new Counter({
      name: 'hyokd_request_errors_total',
      help: 'Calls that failed, by service, method and registry reason code.',
      labelNames: ['service', 'method', 'reason'],
      registers,
    });
    new Gauge({
      name: 'hyokd_requests_in_flight',
      help: 'Calls started and not yet finished, by service and method.',
      labelNames: ['service', 'method'],
      registers,
      collect() {
        this.reset();
        for (const [key, n] of inFlight) {
          const [service, method] = key.split('\0') as [string, string];
          this.set({ service, method }, n);
        }
      },
    });
    // outcome: ok | error, so fast failures do not hide a slow success path.
    this.#duration = new Histogram({
      name: 'hyokd_request_duration_seconds',
      help: 'End-to-end call latency in seconds, from receipt to response.',
      labelNames: ['service', 'method', 'outcome'],
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    this.#hsmDuration = new Histogram({
      name: 'hyokd_hsm_operation_duration_seconds',
      help: 'Time a call spent in its HSM step (queue wait included), in seconds.',
      labelNames: ['service', 'method'],
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    this.#items = new Histogram({
      name: 'hyokd_request_batch_items',
      help: 'Items per call: batch size or stream message count (1 for unary calls).',
      labelNames: ['service', 'method'],
      buckets: [...BATCH_ITEM_BUCKETS],
      registers,
    });

    // ---- HSM (read from HsmBackend.counters() at scrape time) --------------------------
    // A cumulative total read from a source at scrape time: reset, then set to the total,
    // so a source that restarts from zero shows as an ordinary counter reset.
    const sourceCounter =
      <S>(source: () => S | undefined) =>
      (name: string, help: string, pick: (s: S) => number | undefined): void => {
        new Counter({
          name,
          help,
          registers,
          collect() {
            const s = source();
            this.reset();
            const v = s ? pick(s) : undefined;
            if (v !== undefined) this.inc(nonNegative(v));
          },
        });
      };
    const hsmCounter = sourceCounter(hsm);
    // state: the three HsmState values, one series each (1 for the current one). All 0
    // when no backend is wired, so "ready != 1" alerts also fire before start-up.
    new Gauge({
      name: 'hyokd_hsm_state',
      help: 'HSM backend state: 1 for the current one of ready, recovering, closed.',
      labelNames: ['state'],
      registers,
      collect() {
        const c = hsm();
        for (const s of HSM_STATES) this.set({ state: s }, c?.state === s ? 1 : 0);
      },
    });
    // state: busy | idle.
    new Gauge({
      name: 'hyokd_hsm_sessions',
      help: 'Worker sessions in the HSM pool, by state (busy, idle).',
      labelNames: ['state'],
      registers,
      collect() {
        const c = hsm();
        this.reset();
        if (!c) return;
        this.set({ state: 'busy' }, nonNegative(c.sessionsBusy));
        this.set({ state: 'idle' }, nonNegative(c.sessionsIdle));
      },
    });
    new Gauge({
      name: 'hyokd_hsm_queue_depth',
      help: 'HSM operations waiting for a session.',
      registers,
      collect() {
        const c = hsm();
        this.reset();
        if (c) this.set(nonNegative(c.queueDepth));
      },
    });
    new Gauge({
      name: 'hyokd_hsm_queue_capacity',
      help: 'Most HSM operations the queue accepts before refusing with RESOURCE_EXHAUSTED.',
      registers,
      collect() {
        const c = hsm();
        this.reset();
        if (c) this.set(nonNegative(c.queueCapacity));
      },
    });
    // op: one of the 16 HsmBackend op names, else `other`.
    new Counter({
      name: 'hyokd_hsm_operations_total',
      help: 'HSM operations completed, by operation.',
      labelNames: ['op'],
      registers,
      collect() {
        const c = hsm();
        this.reset();
        if (c) for (const [op, n] of sumBy(c.ops, hsmOpLabel)) this.inc({ op }, n);
      },
    });
    // code: a CKR_*/HYOKD_* name (shape-checked, at most 128 distinct), else `other`.
    new Counter({
      name: 'hyokd_hsm_errors_total',
      help: 'HSM operation errors, by CKR_* or HYOKD_* code.',
      labelNames: ['code'],
      registers,
      collect() {
        const c = hsm();
        this.reset();
        if (c) for (const [code, n] of sumBy(c.errors, hsmCode)) this.inc({ code }, n);
      },
    });
    hsmCounter(
      'hyokd_hsm_reinitializations_total',
      'PKCS#11 module re-initializations after device-level errors.',
      (c) => c.reinitializations,
    );
    hsmCounter(
      'hyokd_hsm_session_reopens_total',
      'Worker sessions closed and reopened after session-level errors.',
      (c) => c.sessionReopens,
    );
    hsmCounter('hyokd_hsm_relogins_total', 'Logins repeated after the token logged out.', (c) => c.relogins);
    hsmCounter(
      'hyokd_hsm_handle_resolves_total',
      'Key handle look-ups on the token (cache misses and stale handles).',
      (c) => c.handleResolves,
    );
    hsmCounter(
      'hyokd_hsm_session_copies_dropped_total',
      'Session-object key copies dropped because their token key vanished or changed outside hyokd.',
      (c) => c.sessionCopiesDropped,
    );
    hsmCounter(
      'hyokd_hsm_queue_rejections_total',
      'Submissions refused because the HSM queue was full (RESOURCE_EXHAUSTED).',
      (c) => c.rejectedQueueFull,
    );

    // ---- audit ---------------------------------------------------------------------------
    this.#auditWrite = new Histogram({
      name: 'hyokd_audit_write_duration_seconds',
      help: 'Time to make one audit group commit durable (O_DSYNC write, or write and fsync), in seconds.',
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    this.#auditBatch = new Histogram({
      name: 'hyokd_audit_commit_records',
      help: 'Records per audit group commit.',
      buckets: [...AUDIT_BATCH_BUCKETS],
      registers,
    });
    new Gauge({
      name: 'hyokd_audit_healthy',
      help: '1 while the audit log accepts records; 0 means calls fail closed with AUDIT_UNAVAILABLE.',
      registers,
      collect() {
        const a = audit();
        this.set(a?.healthy === true ? 1 : 0);
      },
    });
    new Gauge({
      name: 'hyokd_audit_pending_records',
      help: 'Audit records waiting for the next group commit.',
      registers,
      collect() {
        const a = audit();
        this.reset();
        if (a) this.set(nonNegative(a.pending));
      },
    });
    const auditCounter = sourceCounter(audit);
    auditCounter(
      'hyokd_audit_records_total',
      'Audit records made durable (markers included).',
      (a) => a.records,
    );
    auditCounter('hyokd_audit_commits_total', 'Audit group commits made durable.', (a) => a.batches);
    auditCounter(
      'hyokd_audit_failures_total',
      'Audit group commits that failed (write error or timeout).',
      (a) => a.failures,
    );
    auditCounter(
      'hyokd_audit_rejected_records_total',
      'Audit records refused; each is a call that failed closed.',
      (a) => a.rejected,
    );
    auditCounter('hyokd_audit_checkpoints_total', 'Signed audit checkpoints written.', (a) => a.checkpoints);
    auditCounter(
      'hyokd_audit_checkpoint_failures_total',
      'Audit checkpoints that could not be signed or written.',
      (a) => a.checkpointFailures,
    );
    auditCounter('hyokd_audit_rotations_total', 'Audit file rotations.', (a) => a.rotations);
    auditCounter(
      'hyokd_audit_recoveries_total',
      'Times the audit log recovered after an outage.',
      (a) => a.recoveries,
    );

    // ---- store (read at scrape time) -----------------------------------------------------
    // state: the three KEY_STATES, always present (0 when none).
    new Gauge({
      name: 'hyokd_keys',
      help: 'Keys in the metadata store, by state.',
      labelNames: ['state'],
      registers,
      async collect() {
        const keys = await listKeys();
        this.reset();
        if (!keys) return;
        const counts = new Map<string, number>(KEY_STATES.map((s) => [s, 0]));
        for (const k of keys) if (counts.has(k.state)) counts.set(k.state, counts.get(k.state)! + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    // within: the three fixed windows of EXPIRY_WINDOWS.
    new Gauge({
      name: 'hyokd_keys_expiring',
      help: 'Keys not deleted whose rotation policy expiry falls within the window and has not passed yet.',
      labelNames: ['within'],
      registers,
      async collect() {
        const keys = await listKeys();
        this.reset();
        if (!keys) return;
        const now = clock();
        for (const [within, ms] of EXPIRY_WINDOWS) {
          let n = 0;
          for (const k of keys) {
            const at = k.rotation?.expiresAt;
            if (k.state !== 'soft-deleted' && typeof at === 'number' && at > now && at <= now + ms) n++;
          }
          this.set({ within }, n);
        }
      },
    });
    new Gauge({
      name: 'hyokd_keys_expired',
      help: 'Keys not deleted whose rotation policy expiry has passed (they can no longer be used).',
      registers,
      async collect() {
        const keys = await listKeys();
        this.reset();
        if (!keys) return;
        const now = clock();
        this.set(
          keys.filter(
            (k) =>
              k.state !== 'soft-deleted' &&
              typeof k.rotation?.expiresAt === 'number' &&
              k.rotation.expiresAt <= now,
          ).length,
        );
      },
    });
    new Gauge({
      name: 'hyokd_quorum_pending_requests',
      help: 'Quorum (M-of-N) requests waiting for approvals.',
      registers,
      async collect() {
        const reqs = await pending();
        this.reset();
        if (reqs) this.set(reqs.length);
      },
    });

    // ---- the daemon itself -----------------------------------------------------------------
    // version/commit: set once by the daemon, not by callers; node_version: the runtime.
    const build = new Gauge({
      name: 'hyokd_build_info',
      help: 'Always 1; labels say which hyokd build and Node.js runtime are running.',
      labelNames: ['version', 'commit', 'node_version'],
      registers,
    });
    build.set(
      { version: opts.version ?? 'unknown', commit: opts.commit ?? '', node_version: process.version },
      1,
    );
    // source: hsm | audit | store.
    this.#sourceErrors = new Counter({
      name: 'hyokd_metrics_source_errors_total',
      help: 'Scrape-time reads of a metrics source (hsm, audit, store) that threw.',
      labelNames: ['source'],
      registers,
    });
    for (const source of ['hsm', 'audit', 'store'] as const) this.#sourceErrors.inc({ source }, 0);

    // Standard names (process_*, nodejs_*): the registry is hyokd's own, so they cannot
    // collide, and stock Node.js dashboards and alerts work unchanged.
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Wire (or replace) sources after start; fields given replace the previous ones, `undefined` unwires. */
  setSources(sources: MetricsSources): void {
    this.#sources = { ...this.#sources, ...sources };
    this.#keysCache = undefined;
  }

  // ---- CallObserver ------------------------------------------------------------------------

  callStarted(service: string, method: string): void {
    const l = this.#methods.label(service, method);
    const key = `${l.service}\0${l.method}`;
    this.#inFlight.set(key, (this.#inFlight.get(key) ?? 0) + 1);
  }

  callFinished(report: CallReport): void {
    const l = this.#methods.label(report.service, report.method);
    const key = `${l.service}\0${l.method}`;
    const n = this.#inFlight.get(key) ?? 0;
    if (n > 1) this.#inFlight.set(key, n - 1);
    else if (n === 1) this.#inFlight.set(key, 0);
    const status = statusLabel(report.status);
    // Label objects spelled out, not `{ ...l, status }`: on Node.js 20 an object made by a
    // leading spread plus more properties outlives the young generation (V8 11.3; measured
    // in isolation and in the daemon, bench/RESULTS.md seventeenth pass), and these three
    // were most of what a finished call left to be promoted.
    const { service, method } = l;
    this.#requests.inc({
      service,
      method,
      status,
      identity_class: identityClassLabel(report.identityClass),
    });
    if (status !== 'OK') {
      this.#errors.inc({ service, method, reason: reasonLabel(report.reason) || 'UNSPECIFIED' });
    }
    if (isSeconds(report.seconds)) {
      this.#duration.observe({ service, method, outcome: status === 'OK' ? 'ok' : 'error' }, report.seconds);
    }
    if (isSeconds(report.hsmSeconds)) this.#hsmDuration.observe(l, report.hsmSeconds);
    if (Number.isFinite(report.items) && report.items >= 0) this.#items.observe(l, report.items);
  }

  // ---- audit writer callback -------------------------------------------------------------------

  /** Feed from `AuditWriterOptions.onBatch`: one durable group commit. */
  observeAuditCommit(info: AuditCommitInfo): void {
    if (Number.isFinite(info.latencyMs) && info.latencyMs >= 0)
      this.#auditWrite.observe(info.latencyMs / 1000);
    if (Number.isFinite(info.records) && info.records >= 0) this.#auditBatch.observe(info.records);
  }

  /** The text exposition (what GET /metrics returns). */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The Content-Type of `text()`. */
  get contentType(): string {
    return this.registry.contentType;
  }

  // ---- sources ------------------------------------------------------------------------------------

  #read(source: 'hsm'): HsmCounters | undefined;
  #read(source: 'audit'): AuditStatsLike | undefined;
  #read(source: 'hsm' | 'audit'): HsmCounters | AuditStatsLike | undefined {
    const fn = this.#sources[source];
    if (!fn) return undefined;
    try {
      return fn() ?? undefined;
    } catch {
      this.#sourceError(source);
      return undefined;
    }
  }

  async #readAsync<T>(source: 'store', fn: (s: MetricsStore) => Promise<T>): Promise<T | undefined> {
    const store = this.#sources.store;
    if (!store) return undefined;
    try {
      return await fn(store);
    } catch {
      this.#sourceError(source);
      return undefined;
    }
  }

  /**
   * Three families count keys; one scrape lists them once. The list is shared for a
   * second, so concurrent scrapes cannot multiply store reads either.
   */
  #keys(): Promise<KeyRecord[] | undefined> {
    const t = performance.now();
    if (this.#keysCache && t - this.#keysCache.at < 1000) return this.#keysCache.list;
    const list = this.#readAsync('store', (s) => s.listKeys());
    this.#keysCache = { at: t, list };
    return list;
  }

  #sourceError(source: Source): void {
    this.#sourceErrors.inc({ source });
  }
}

function nonNegative(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0;
}

function isSeconds(n: number | undefined): n is number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0;
}

/** Sums a count table after mapping its keys to label values (several keys may map to `other`). */
function sumBy(table: Record<string, number> | undefined, label: (k: string) => string): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, n] of Object.entries(table ?? {})) {
    const l = label(k);
    out.set(l, (out.get(l) ?? 0) + nonNegative(n));
  }
  return out;
}
