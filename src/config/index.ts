/**
 * Configuration: one YAML file plus HYOKD_* environment overrides, validated with zod.
 *
 *   loadConfig(opts?: { file?: string; env?: Record<string, string|undefined>; cwd?: string }): Config
 *     file: YAML path (relative to cwd); default $HYOKD_CONFIG, else none (all defaults).
 *     Returns a deeply frozen Config with absolute paths; throws ConfigError.
 *   readPin(config, env = process.env): Buffer   the token PIN; caller zeroes it after login
 *   ConfigError { problems: string[] }            one line per problem, never a value
 *   ENV_OVERRIDES: { env, path }[]                every variable and the field it sets
 *   envNameFor(path: string[]): string            ['server','tls','clientCa'] -> HYOKD_SERVER_TLS_CLIENT_CA
 *   unknownEnvOverrides(env, ignore?): string[]   HYOKD_* names matching no field (warn on them)
 *   parseListen('host:port'): { host, port } | null
 *
 * Precedence: environment > YAML > defaults. `home` defaults to ./var (cwd-relative);
 * every other relative path resolves against home. Defaults under home:
 *   hsm.pinFile home/hsm.pin (only when hsm.pinEnv is not set)
 *   server.tls.{cert,key,clientCa} home/pki/{server.pem,server.key,ca.pem} (ensureDevPki layout)
 *   store.path home/hyokd.db   audit.dir home/audit   policy.file home/policy.yaml
 * quorum: { operations: [] (QUORUM_OPERATION_NAMES, e.g. PurgeKey), approvals: 2, ttlMs: 24 h }
 */
export type {
  AuditConfig,
  Config,
  HsmConfig,
  LogLevel,
  QuorumConfig,
  QuorumOperationName,
  ServerConfig,
} from './config.js';
export { ConfigError } from './config-error.js';
export {
  CONFIG_FILE_ENV,
  ENV_OVERRIDES,
  ENV_PREFIX,
  envNameFor,
  unknownEnvOverrides,
  type EnvOverride,
} from './env-overrides.js';
export { DEFAULT_HOME, DEFAULT_TOKEN_LABEL, loadConfig, type LoadConfigOptions } from './load-config.js';
export { readPin } from './read-pin.js';
export { LOG_LEVELS, QUORUM_OPERATION_NAMES, parseListen } from './schema.js';
