// Turns a validated policy document into the form `decide` walks: patterns compiled to
// RegExps once, "*" expanded to every permission, roles resolved to permission sets.

import { PERMISSIONS, type Permission } from './permissions.js';
import { compilePattern, type CompiledPattern } from './pattern.js';
import type { PolicyDocument } from './schema.js';

export interface CompiledDeny {
  id: string;
  identity: CompiledPattern;
  permissions: ReadonlySet<Permission>;
  /** null: every request, with or without a key. */
  keys: CompiledPattern[] | null;
}

export interface CompiledGrant {
  id: string;
  identity: CompiledPattern;
  permissions: ReadonlySet<Permission>;
}

export interface CompiledReasons {
  allowed: ReadonlySet<string>;
  missing: 'allow' | 'deny';
  /** null: every permission. */
  permissions: ReadonlySet<Permission> | null;
}

export interface CompiledKeyRule {
  pattern: CompiledPattern;
  grants: CompiledGrant[];
  reasons: CompiledReasons | null;
}

export interface CompiledBinding {
  index: number;
  identity: CompiledPattern;
  /** In document order, each with its permission set. */
  roles: Array<{ name: string; permissions: ReadonlySet<Permission> }>;
  keys: CompiledPattern[] | null;
}

export interface CompiledPolicy {
  readonly document: PolicyDocument;
  readonly deny: readonly CompiledDeny[];
  readonly keyRules: readonly CompiledKeyRule[];
  readonly bindings: readonly CompiledBinding[];
}

function permSet(list: ReadonlyArray<Permission | '*'>): ReadonlySet<Permission> {
  return new Set(list.includes('*') ? PERMISSIONS : (list as Permission[]));
}

export function compilePolicy(doc: PolicyDocument): CompiledPolicy {
  const roles = new Map(Object.entries(doc.roles).map(([name, perms]) => [name, permSet(perms)]));
  return Object.freeze({
    document: doc,
    deny: doc.deny.map((d, i) => ({
      id: `deny[${i}]`,
      identity: compilePattern(d.identity, 'identity'),
      permissions: permSet(d.permissions),
      keys: d.keys ? d.keys.map((k) => compilePattern(k, 'key')) : null,
    })),
    keyRules: doc.keys.map((k) => ({
      pattern: compilePattern(k.key, 'key'),
      grants: k.grants.map((g, j) => ({
        id: `key:${k.key}:grant[${j}]`,
        identity: compilePattern(g.identity, 'identity'),
        permissions: permSet(g.permissions),
      })),
      reasons: k.reasons
        ? {
            allowed: new Set(k.reasons.allowed),
            missing: k.reasons.missing,
            permissions: k.reasons.permissions ? permSet(k.reasons.permissions) : null,
          }
        : null,
    })),
    bindings: doc.bindings.map((b, i) => ({
      index: i,
      identity: compilePattern(b.identity, 'identity'),
      roles: b.roles.map((name) => ({ name, permissions: roles.get(name) ?? new Set<Permission>() })),
      keys: b.keys ? b.keys.map((k) => compilePattern(k, 'key')) : null,
    })),
  });
}
