// Environment overrides. Every config field has one variable, named from its path:
//   HYOKD_ + each path segment in SCREAMING_SNAKE_CASE, joined by "_"
//   home                  -> HYOKD_HOME
//   hsm.module            -> HYOKD_HSM_MODULE
//   hsm.pinFile           -> HYOKD_HSM_PIN_FILE
//   server.listen         -> HYOKD_SERVER_LISTEN
//   server.tls.clientCa   -> HYOKD_SERVER_TLS_CLIENT_CA
// Values are strings and are coerced by the field's type before validation: integers
// ("4096"), booleans (true/false, 1/0, yes/no, on/off), lists as comma-separated items
// (HYOKD_QUORUM_OPERATIONS=PurgeKey,DeleteKey; empty: an empty list), and for
// hsm.sessions "auto" or "null" meaning null. An env variable wins over the YAML file. HYOKD_CONFIG names the
// YAML file itself. The full table is ENV_OVERRIDES.
import { configSchema } from './schema.js';
import { leaves, type Unwrapped } from './schema-walk.js';

export const ENV_PREFIX = 'HYOKD_';
/** Names the YAML config file when loadConfig is not given one. */
export const CONFIG_FILE_ENV = 'HYOKD_CONFIG';

export function camelToScreamingSnake(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

export function envNameFor(path: readonly string[]): string {
  return ENV_PREFIX + path.map(camelToScreamingSnake).join('_');
}

export interface EnvOverride {
  /** Environment variable name, e.g. "HYOKD_HSM_MODULE". */
  readonly env: string;
  /** Dotted config path, e.g. "hsm.module". */
  readonly path: string;
}

const FIELDS: ReadonlyArray<{ env: string; path: string[]; field: Unwrapped }> = leaves(configSchema).map(
  ({ path, field }) => ({ env: envNameFor(path), path, field }),
);

/** The complete, documented variable table. */
export const ENV_OVERRIDES: readonly EnvOverride[] = Object.freeze(
  FIELDS.map(({ env, path }) => Object.freeze({ env, path: path.join('.') })),
);

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

/** Turns an env string into the field's type when it clearly is one; otherwise leaves it for the schema to refuse. */
function coerce(raw: string, field: Unwrapped): unknown {
  const v = raw.trim();
  if (field.nullable && /^(auto|null)$/i.test(v)) return null;
  if (field.type === 'number' && /^-?\d+(\.\d+)?$/.test(v)) return Number(v);
  if (field.type === 'array') return v === '' ? [] : v.split(',').map((item) => item.trim());
  if (field.type === 'boolean') {
    const lower = v.toLowerCase();
    if (TRUE.has(lower)) return true;
    if (FALSE.has(lower)) return false;
  }
  return raw;
}

/**
 * Writes every set HYOKD_* override into `target` (mutated) and returns the dotted
 * paths it set, keyed to the variable name, so errors can say where a value came from.
 */
export function applyEnvOverrides(
  target: Record<string, unknown>,
  env: Readonly<Record<string, string | undefined>>,
): Map<string, string> {
  const applied = new Map<string, string>();
  for (const { env: name, path, field } of FIELDS) {
    const raw = env[name];
    if (raw === undefined) continue;
    let obj: Record<string, unknown> = target;
    let ok = true;
    for (const seg of path.slice(0, -1)) {
      const next = obj[seg];
      if (next === undefined || next === null) {
        obj = obj[seg] = {};
      } else if (typeof next === 'object' && !Array.isArray(next)) {
        obj = next as Record<string, unknown>;
      } else {
        ok = false; // the file has a scalar where a section belongs; the schema reports it
        break;
      }
    }
    if (!ok) continue;
    obj[path[path.length - 1]!] = coerce(raw, field);
    applied.set(path.join('.'), name);
  }
  return applied;
}

/**
 * HYOKD_* variables that match no config field (probably typos). Not an error, since
 * other tools may use the prefix; the CLI should warn about them. `ignore` lists names
 * that are known to be fine (e.g. the variable named by hsm.pinEnv).
 */
export function unknownEnvOverrides(
  env: Readonly<Record<string, string | undefined>>,
  ignore: readonly string[] = [],
): string[] {
  const known = new Set([...FIELDS.map((f) => f.env), CONFIG_FILE_ENV, ...ignore]);
  return Object.keys(env)
    .filter((k) => k.startsWith(ENV_PREFIX) && !known.has(k))
    .sort();
}
