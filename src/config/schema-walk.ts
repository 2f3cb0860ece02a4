// Small helpers to look inside the zod config schema: find the leaf fields (for the env
// mapping), a field's description (for error hints) and its base type (for env coercion).
// zod v4 keeps wrappers (optional, nullable, default, prefault) as `def.innerType`.
import type { z } from 'zod';

interface Def {
  type: string;
  innerType?: z.ZodType;
  shape?: Record<string, z.ZodType>;
}

const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

export interface Unwrapped {
  /** The innermost schema, without optional/nullable/default/prefault wrappers. */
  readonly base: z.ZodType;
  /** zod's type name of the base, e.g. "number", "boolean", "string", "enum", "object". */
  readonly type: string;
  readonly nullable: boolean;
  /** The first description found from the outside in. */
  readonly description: string | undefined;
}

export function unwrap(schema: z.ZodType): Unwrapped {
  let s = schema;
  let nullable = false;
  let description = s.description;
  for (let def = defOf(s); def.innerType !== undefined; def = defOf(s)) {
    if (def.type === 'nullable') nullable = true;
    s = def.innerType;
    description ??= s.description;
  }
  return { base: s, type: defOf(s).type, nullable, description };
}

/** The schema at a dotted path, or undefined when the path leaves the schema. */
export function schemaAt(root: z.ZodType, path: readonly PropertyKey[]): Unwrapped | undefined {
  let cur = unwrap(root);
  for (const key of path) {
    const shape = defOf(cur.base).shape;
    if (cur.type !== 'object' || shape === undefined || typeof key !== 'string' || !(key in shape)) {
      return undefined;
    }
    cur = unwrap(shape[key]!);
  }
  return cur;
}

/** Every non-object field of an object schema, depth first, in declaration order. */
export function leaves(root: z.ZodType, prefix: string[] = []): Array<{ path: string[]; field: Unwrapped }> {
  const u = unwrap(root);
  const shape = defOf(u.base).shape;
  if (u.type !== 'object' || shape === undefined) return [{ path: prefix, field: u }];
  return Object.entries(shape).flatMap(([k, v]) => leaves(v, [...prefix, k]));
}

/** Field names allowed in the object at `path` (for "unknown key" hints). */
export function keysAt(root: z.ZodType, path: readonly PropertyKey[]): string[] {
  const u = schemaAt(root, path);
  const shape = u === undefined ? undefined : defOf(u.base).shape;
  return shape === undefined ? [] : Object.keys(shape);
}
