// Parsing a policy document from text: syntax (YAML or JSON), then the schema, then
// compilation. Every problem is reported with the path it concerns, all at once.

import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { compilePolicy, type CompiledPolicy } from './compile.js';
import { policyDocumentSchema } from './schema.js';

export type PolicyFormat = 'yaml' | 'json';

export class PolicyError extends Error {
  override readonly name = 'PolicyError';
  readonly code = 'POLICY_INVALID';
  /** One line per problem: `<path>: <message>`. */
  readonly problems: readonly string[];

  constructor(problems: string[], context = 'invalid policy') {
    super(`${context}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.problems = problems;
  }
}

/** `bindings[0].roles[1]`, `roles.admin`, `(root)`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && /^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out || '(root)';
}

function issueLines(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((i) => `${formatPath(i.path)}: ${i.message}`);
}

function parseText(text: string, format: PolicyFormat): unknown {
  if (format === 'json') {
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new PolicyError([`(syntax): ${(err as Error).message}`]);
    }
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new PolicyError(doc.errors.map((e) => `(syntax): ${e.message.split('\n')[0]}`));
  }
  return doc.toJS({ maxAliasCount: 100 }) as unknown;
}

/** Validates an already-parsed value (e.g. from a gRPC request) and compiles it. */
export function policyFromValue(value: unknown): CompiledPolicy {
  const result = policyDocumentSchema.safeParse(value);
  if (!result.success) throw new PolicyError(issueLines(result.error.issues));
  return compilePolicy(result.data);
}

/** Parses, validates and compiles a policy document. Throws PolicyError listing every problem. */
export function parsePolicy(text: string, format: PolicyFormat): CompiledPolicy {
  if (format !== 'yaml' && format !== 'json')
    throw new PolicyError([`(format): unknown format "${String(format)}"`]);
  return policyFromValue(parseText(text, format));
}
