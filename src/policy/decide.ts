// Authorization decisions: pure functions of (compiled policy, request). No I/O.
//
// Evaluation order, and the rule id reported when that step decides:
//   0. A malformed request (empty identity, unknown permission, non-string key name or
//      reason) is denied:                                        `invalid-request`
//   1. Deny rules, in document order; the first that matches denies:     `deny[i]`
//      A deny rule matches when its identity pattern matches, the permission is listed,
//      and, if it has `keys`, the request names a key matching one of them.
//   2. Allow rules, first match wins, per-key grants before bindings:
//      - per-key grants (rules whose key pattern matches the request's key, in document
//        order, grants in order):                        `key:<pattern>:grant[j]`
//      - bindings, in document order, roles in listed order; a binding with `keys`
//        applies only to requests naming a matching key:      `binding[i]:<role>`
//   3. Nothing allowed: denied:                                      `default-deny`
//   4. The request is otherwise allowed; every key rule whose pattern matches the key and
//      that has a `reasons` block covering the permission must accept the reason, in
//      document order. An absent or empty reason follows `missing`:
//                          `reason-missing:<pattern>` (when missing: deny),
//      a reason not in `allowed`:                  `reason-not-allowed:<pattern>`.
//   5. Allowed, with the rule from step 2.
// Requests without a key (e.g. `list`) never match key-scoped rules.

import type { CompiledPolicy } from './compile.js';
import { isPermission, MANAGEMENT_PERMISSIONS, type Permission } from './permissions.js';
import { matches, type CompiledPattern } from './pattern.js';

export interface AuthzRequest {
  /** From the verified client certificate: URI SAN, else DNS SAN, else subject CN. */
  identity: string;
  permission: Permission;
  keyName?: string;
  /** The caller's stated access reason, if any. */
  reason?: string;
}

export interface Decision {
  allowed: boolean;
  /** Stable id of the rule that decided (see the top of this file). */
  rule: string;
  explanation: string;
}

export type StepEffect = 'deny' | 'allow' | 'none';

export interface ExplainStep {
  rule: string;
  matched: boolean;
  /** What this rule did to the outcome when it matched. */
  effect: StepEffect;
  detail: string;
}

export interface Explanation {
  decision: Decision;
  /** Every rule considered, in evaluation order, up to and including the decider. */
  steps: ExplainStep[];
}

type Trace = ExplainStep[] | null;

function anyMatch(patterns: readonly CompiledPattern[], value: string): boolean {
  for (const p of patterns) if (matches(p, value)) return true;
  return false;
}

function describe(req: AuthzRequest): string {
  return `${req.identity} ${req.permission}${req.keyName !== undefined ? ` on key "${req.keyName}"` : ''}`;
}

function note(trace: Trace, rule: string, matched: boolean, effect: StepEffect, detail: string): void {
  if (trace) trace.push({ rule, matched, effect, detail });
}

/** Why a (identity, permission, keys) rule does not match, or null when it does. */
function mismatch(
  identity: CompiledPattern,
  perms: ReadonlySet<Permission>,
  keys: readonly CompiledPattern[] | null,
  req: AuthzRequest,
): string | null {
  if (!matches(identity, req.identity)) return `identity does not match "${identity.source}"`;
  if (!perms.has(req.permission)) return `does not cover ${req.permission}`;
  if (keys !== null) {
    if (req.keyName === undefined) return 'scoped to keys; the request names no key';
    if (!anyMatch(keys, req.keyName))
      return `key does not match ${keys.map((k) => `"${k.source}"`).join(', ')}`;
  }
  return null;
}

function evaluate(policy: CompiledPolicy, raw: AuthzRequest, trace: Trace): Decision {
  // Transport layers often carry an absent optional field as null: treat it as absent.
  const req: AuthzRequest = { identity: raw.identity, permission: raw.permission };
  if (raw.keyName !== undefined && raw.keyName !== null) req.keyName = raw.keyName;
  if (raw.reason !== undefined && raw.reason !== null) req.reason = raw.reason;
  if (
    typeof req.identity !== 'string' ||
    req.identity.length === 0 ||
    !isPermission(req.permission) ||
    (req.keyName !== undefined && typeof req.keyName !== 'string') ||
    (req.reason !== undefined && typeof req.reason !== 'string')
  ) {
    const d = {
      allowed: false,
      rule: 'invalid-request',
      explanation: 'denied: the request has no identity, an unknown permission or a malformed field',
    };
    note(trace, d.rule, true, 'deny', d.explanation);
    return d;
  }

  for (const rule of policy.deny) {
    const why = mismatch(rule.identity, rule.permissions, rule.keys, req);
    if (why === null) {
      const d = {
        allowed: false,
        rule: rule.id,
        explanation: `denied by ${rule.id}: ${describe(req)} is denied`,
      };
      note(trace, rule.id, true, 'deny', d.explanation);
      return d;
    }
    note(trace, rule.id, false, 'none', why);
  }

  let allowedBy: string | null = null;
  if (req.keyName !== undefined) {
    for (const kr of policy.keyRules) {
      if (!matches(kr.pattern, req.keyName)) {
        if (kr.grants.length > 0)
          note(trace, `key:${kr.pattern.source}`, false, 'none', 'key does not match');
        continue;
      }
      for (const g of kr.grants) {
        const why = mismatch(g.identity, g.permissions, null, req);
        note(trace, g.id, why === null, why === null ? 'allow' : 'none', why ?? 'grants it');
        if (why === null) {
          allowedBy = g.id;
          break;
        }
      }
      if (allowedBy) break;
    }
  }
  if (allowedBy === null) {
    outer: for (const b of policy.bindings) {
      const base = `binding[${b.index}]`;
      if (!matches(b.identity, req.identity)) {
        note(trace, base, false, 'none', `identity does not match "${b.identity.source}"`);
        continue;
      }
      if (b.keys !== null && (req.keyName === undefined || !anyMatch(b.keys, req.keyName))) {
        note(
          trace,
          base,
          false,
          'none',
          req.keyName === undefined ? 'scoped to keys; the request names no key' : 'key out of scope',
        );
        continue;
      }
      for (const role of b.roles) {
        const id = `${base}:${role.name}`;
        if (role.permissions.has(req.permission)) {
          note(trace, id, true, 'allow', `role "${role.name}" grants ${req.permission}`);
          allowedBy = id;
          break outer;
        }
        note(trace, id, false, 'none', `role "${role.name}" does not grant ${req.permission}`);
      }
    }
  }
  if (allowedBy === null) {
    const d = {
      allowed: false,
      rule: 'default-deny',
      explanation: `denied: no rule grants ${describe(req)}`,
    };
    note(trace, d.rule, true, 'deny', d.explanation);
    return d;
  }

  if (req.keyName !== undefined) {
    const reason = req.reason === undefined || req.reason === '' ? null : req.reason;
    for (const kr of policy.keyRules) {
      const rs = kr.reasons;
      if (rs === null || !matches(kr.pattern, req.keyName)) continue;
      if (rs.permissions !== null && !rs.permissions.has(req.permission)) continue;
      const src = kr.pattern.source;
      if (reason === null) {
        if (rs.missing === 'deny') {
          const d = {
            allowed: false,
            rule: `reason-missing:${src}`,
            explanation: `denied: keys matching "${src}" require an access reason for ${req.permission}`,
          };
          note(trace, d.rule, true, 'deny', d.explanation);
          return d;
        }
        note(trace, `reason-missing:${src}`, true, 'none', 'no reason given; this rule allows that');
      } else if (!rs.allowed.has(reason)) {
        const d = {
          allowed: false,
          rule: `reason-not-allowed:${src}`,
          explanation: `denied: reason ${JSON.stringify(reason)} is not allowed on keys matching "${src}"`,
        };
        note(trace, d.rule, true, 'deny', d.explanation);
        return d;
      } else {
        note(trace, `reason-allowed:${src}`, true, 'none', `reason ${JSON.stringify(reason)} is allowed`);
      }
    }
  }

  return { allowed: true, rule: allowedBy, explanation: `allowed by ${allowedBy}: ${describe(req)}` };
}

/** The decision for one request. Default deny; deny rules win. */
export function decide(policy: CompiledPolicy, request: AuthzRequest): Decision {
  return evaluate(policy, request, null);
}

function grantsManagement(perms: ReadonlySet<Permission>): boolean {
  for (const p of MANAGEMENT_PERMISSIONS) if (perms.has(p)) return true;
  return false;
}

/**
 * How the policy sets a caller up, for metrics labels: 'admin' when a binding or a per-key
 * grant whose identity pattern matches gives it any management permission, else 'client'.
 * Deny rules, key scopes and reasons do not enter: this names the caller's role, not what
 * any one request of it gets.
 */
export function callerClass(policy: CompiledPolicy, identity: string): 'admin' | 'client' {
  for (const b of policy.bindings) {
    if (matches(b.identity, identity) && b.roles.some((r) => grantsManagement(r.permissions))) return 'admin';
  }
  for (const rule of policy.keyRules) {
    for (const g of rule.grants) {
      if (matches(g.identity, identity) && grantsManagement(g.permissions)) return 'admin';
    }
  }
  return 'client';
}

/** The decision plus every rule considered on the way (for `hyokd policy explain`). */
export function explain(policy: CompiledPolicy, request: AuthzRequest): Explanation {
  const steps: ExplainStep[] = [];
  const decision = evaluate(policy, request, steps);
  return { decision, steps };
}
