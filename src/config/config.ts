// The validated, resolved configuration handed to the rest of the daemon. Every path
// is absolute. Objects are deeply frozen.
import type { LOG_LEVELS, QUORUM_OPERATION_NAMES } from './schema.js';

export type LogLevel = (typeof LOG_LEVELS)[number];
export type QuorumOperationName = (typeof QUORUM_OPERATION_NAMES)[number];

export interface QuorumConfig {
  /** Admin operations held for approval; empty: none (the default). */
  readonly operations: readonly QuorumOperationName[];
  readonly approvals: number;
  readonly ttlMs: number;
}

export interface HsmConfig {
  /** Absolute path of the PKCS#11 module. */
  readonly module: string;
  /** Exactly one of tokenLabel / tokenSerial is non-null. */
  readonly tokenLabel: string | null;
  readonly tokenSerial: string | null;
  /** Exactly one of pinFile / pinEnv is non-null; read the PIN with readPin(). */
  readonly pinFile: string | null;
  readonly pinEnv: string | null;
  /** Worker sessions; null = auto (decided by the HSM layer). */
  readonly sessions: number | null;
  readonly queueCapacity: number;
  readonly sessionObjectCopies: boolean;
  readonly sessionCopyRecheckMs: number;
  readonly opTimeoutMs: number;
}

export interface ServerConfig {
  /** "host:port"; see parseListen(). */
  readonly listen: string;
  readonly tls: { readonly cert: string; readonly key: string; readonly clientCa: string };
  readonly keepaliveTimeMs: number;
  readonly keepaliveTimeoutMs: number;
  readonly maxConnectionAgeMs: number;
  readonly maxConnectionAgeGraceMs: number;
  readonly maxBatchItems: number;
  readonly maxDekBytes: number;
  readonly maxAadBytes: number;
  readonly maxContextEntries: number;
  readonly maxMessageBytes: number;
  readonly drainTimeoutMs: number;
}

export interface AuditConfig {
  readonly dir: string;
  readonly enabled: boolean;
  readonly rotateBytes: number;
  readonly rotateAgeMs: number;
  readonly reserveBytes: number;
  readonly checkpointEvery: number;
  readonly checkpointIntervalMs: number;
  readonly writeTimeoutMs: number;
  readonly groupCommitMaxDelayMs: number;
}

export interface Config {
  /** Absolute data directory. */
  readonly home: string;
  /** Absolute path of the YAML file that was read, or null when none was. */
  readonly file: string | null;
  readonly hsm: HsmConfig;
  readonly server: ServerConfig;
  readonly store: { readonly path: string };
  readonly audit: AuditConfig;
  readonly metrics: { readonly listen: string; readonly enabled: boolean };
  readonly policy: { readonly file: string };
  readonly quorum: QuorumConfig;
  readonly log: { readonly level: LogLevel };
}
