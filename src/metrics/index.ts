// Prometheus metrics, health and readiness for hyokd.
export {
  Metrics,
  LATENCY_BUCKETS_SECONDS,
  BATCH_ITEM_BUCKETS,
  AUDIT_BATCH_BUCKETS,
  EXPIRY_WINDOWS,
} from './metrics.js';
export type {
  MetricsOptions,
  MetricsSources,
  MetricsStore,
  AuditStatsLike,
  AuditCommitInfo,
} from './metrics.js';
export { startMetricsServer, parseListen } from './metrics-server.js';
export type { MetricsServer, MetricsServerOptions } from './metrics-server.js';
export { readinessFrom } from './readiness.js';
export type { Readiness, ReadinessSources } from './readiness.js';
export { KNOWN_METHODS, OTHER, MethodLabels, BoundedLabelSet } from './labels.js';
export type { MethodLabelOptions } from './labels.js';
