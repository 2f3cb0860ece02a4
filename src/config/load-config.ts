// Loads the configuration: YAML file, then HYOKD_* environment overrides, then zod
// validation, then defaults that depend on `home` and path resolution.
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { Config } from './config.js';
import { ConfigError, describeIssues, unreadableBecause } from './config-error.js';
import { CONFIG_FILE_ENV, applyEnvOverrides } from './env-overrides.js';
import { configSchema, type ParsedConfig } from './schema.js';

export interface LoadConfigOptions {
  /** YAML file; relative to cwd. Default: $HYOKD_CONFIG, else no file (all defaults). */
  file?: string;
  /** Environment to read HYOKD_* overrides from. Default: process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Directory that a relative `home` and `file` resolve against. Default: process.cwd(). */
  cwd?: string;
}

/** Default data directory, relative to the working directory. */
export const DEFAULT_HOME = './var';
export const DEFAULT_TOKEN_LABEL = 'hyokd';

/**
 * Reads, validates and resolves the configuration. Throws ConfigError listing every
 * problem (field path, origin, how to fix) and never any value.
 */
export function loadConfig(opts: LoadConfigOptions = {}): Config {
  const env = opts.env ?? process.env;
  const cwd = resolve(opts.cwd ?? process.cwd());
  const fileOpt = opts.file ?? (env[CONFIG_FILE_ENV] || undefined);
  const file = fileOpt === undefined ? null : resolve(cwd, fileOpt);

  const input = file === null ? {} : readYaml(file);
  const fromEnv = applyEnvOverrides(input, env);
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    throw new ConfigError(describeIssues(parsed.error.issues, { file, fromEnv }));
  }
  return deepFreeze(resolveConfig(parsed.data, cwd, file));
}

function readYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError([
      `config file ${file} ${unreadableBecause(e)}. Pass an existing file or unset ${CONFIG_FILE_ENV}.`,
    ]);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // yaml's messages quote the offending source line; it could hold a secret, so keep
    // only the position and the error code.
    throw new ConfigError(
      doc.errors.map((err) => {
        const at = err.linePos?.[0];
        const pos = at === undefined ? '' : ` at line ${at.line}, column ${at.col}`;
        return `config file ${file}: YAML syntax error${pos} (${err.code}). Fix the YAML there.`;
      }),
    );
  }
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError([
      `config file ${file}: the top level must be a mapping of sections (hsm:, server:, ...), not a ${Array.isArray(value) ? 'list' : typeof value}.`,
    ]);
  }
  return value as Record<string, unknown>;
}

function resolveConfig(p: ParsedConfig, cwd: string, file: string | null): Config {
  const home = resolve(cwd, p.home ?? DEFAULT_HOME);
  const at = (value: string | undefined, fallback: string) => resolve(home, value ?? fallback);
  const hsm = p.hsm;
  const pinFile = hsm.pinFile !== undefined || hsm.pinEnv === undefined ? at(hsm.pinFile, 'hsm.pin') : null;
  return {
    home,
    file,
    hsm: {
      module: isAbsolute(hsm.module) ? hsm.module : resolve(home, hsm.module),
      tokenLabel: hsm.tokenLabel ?? (hsm.tokenSerial === undefined ? DEFAULT_TOKEN_LABEL : null),
      tokenSerial: hsm.tokenSerial ?? null,
      pinFile,
      pinEnv: hsm.pinEnv ?? null,
      sessions: hsm.sessions,
      queueCapacity: hsm.queueCapacity,
      sessionObjectCopies: hsm.sessionObjectCopies,
      sessionCopyRecheckMs: hsm.sessionCopyRecheckMs,
      opTimeoutMs: hsm.opTimeoutMs,
    },
    server: {
      ...p.server,
      tls: {
        cert: at(p.server.tls.cert, 'pki/server.pem'),
        key: at(p.server.tls.key, 'pki/server.key'),
        clientCa: at(p.server.tls.clientCa, 'pki/ca.pem'),
      },
    },
    store: { path: at(p.store.path, 'hyokd.db') },
    audit: { ...p.audit, dir: at(p.audit.dir, 'audit') },
    metrics: { ...p.metrics },
    policy: { file: at(p.policy.file, 'policy.yaml') },
    quorum: { ...p.quorum, operations: [...new Set(p.quorum.operations)] },
    log: { ...p.log },
  };
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
