// One error type for every configuration problem, carrying one line per problem.
// Messages name the field by dotted path, say where the value came from, and how to fix
// it. They never contain configuration values (a PIN pasted into the wrong field must
// not end up in a log).
import type { z } from 'zod';
import { configSchema } from './schema.js';
import { keysAt, schemaAt } from './schema-walk.js';
import { envNameFor } from './env-overrides.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** One human-readable line per problem. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(
      problems.length === 1
        ? `invalid configuration: ${problems[0]}`
        : `invalid configuration (${problems.length} problems):\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    this.problems = Object.freeze([...problems]);
  }
}

export interface IssueContext {
  /** Absolute path of the YAML file, if one was read. */
  readonly file: string | null;
  /** Dotted path -> env variable that set it. */
  readonly fromEnv: ReadonlyMap<string, string>;
}

const dotted = (path: readonly PropertyKey[]) => path.map(String).join('.');

function origin(path: readonly PropertyKey[], ctx: IssueContext): string {
  const env = ctx.fromEnv.get(dotted(fieldOf(path)));
  if (env !== undefined) return ` (from environment variable ${env})`;
  return ctx.file !== null ? ` (in ${ctx.file})` : '';
}

/** The field a path points into: a list item (quorum.operations.0) belongs to its list. */
function fieldOf(path: readonly PropertyKey[]): readonly PropertyKey[] {
  let end = path.length;
  while (end > 0 && typeof path[end - 1] === 'number') end--;
  return path.slice(0, end);
}

function hint(issuePath: readonly PropertyKey[], ctx: IssueContext): string {
  const path = fieldOf(issuePath);
  const description = schemaAt(configSchema, path)?.description;
  if (description === undefined) return '';
  const env = ctx.fromEnv.get(dotted(path));
  const where =
    env !== undefined
      ? `; fix or unset ${env}`
      : path.length > 0 && path.every((p) => typeof p === 'string')
        ? `; set it in the config file or with ${envNameFor(path as string[])}`
        : '';
  return ` Expected: ${description}${where}.`;
}

/** Turns zod issues into ConfigError lines. */
export function describeIssues(issues: readonly z.core.$ZodIssue[], ctx: IssueContext): string[] {
  const out: string[] = [];
  for (const issue of issues) {
    const path = issue.path;
    if (issue.code === 'unrecognized_keys') {
      const allowed = keysAt(configSchema, path);
      const section = path.length === 0 ? 'at the top level' : `in ${dotted(path)}`;
      for (const key of issue.keys) {
        const name = dotted([...path, key]);
        out.push(
          `${name}: unknown key${ctx.file !== null ? ` (in ${ctx.file})` : ''}. ` +
            `Allowed keys ${section}: ${allowed.join(', ')}. Remove it or fix its spelling.` +
            (/pin$/i.test(key)
              ? ' The PIN itself never goes in the config: use hsm.pinFile or hsm.pinEnv.'
              : ''),
        );
      }
      continue;
    }
    const name = path.length === 0 ? '(top level)' : dotted(path);
    if (issue.code === 'custom' && /both set$/.test(issue.message)) {
      out.push(`${name}: ${issue.message}${origin(path, ctx)}. Keep exactly one of them.`);
      continue;
    }
    out.push(`${name}: ${issue.message}${origin(path, ctx)}.${hint(path, ctx)}`);
  }
  return out;
}

/** Why a file named in the configuration could not be opened, for a ConfigError line. */
export function unreadableBecause(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT'
    ? 'does not exist'
    : code === 'EACCES'
      ? 'is not readable by this user'
      : `cannot be opened (${code})`;
}
