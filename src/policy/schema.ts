// The policy document schema (zod v4, strict: unknown fields are errors).
//
//   version: 1
//   roles:                          # name -> permissions ("*" = all permissions)
//     crypto-user: [wrapKey, unwrapKey]
//     key-admin: [get, list, create, update, delete, recover]
//   bindings:                       # who holds which roles, optionally on which keys
//     - identity: "spiffe://hyokd.dev/svc/*"
//       roles: [crypto-user]
//       keys: ["payments-*"]        # optional; absent = every key and key-less requests
//   keys:                           # per-key rules; one entry per key pattern
//     - key: "payments-*"
//       grants:
//         - identity: "spiffe://hyokd.dev/billing"
//           permissions: [unwrapKey]
//       reasons:                    # optional allowlist of access reasons
//         allowed: [customer-request, fraud-review]
//         missing: deny             # required: what a request without a reason gets
//         permissions: [unwrapKey]  # optional; absent = every permission on these keys
//   deny:                           # optional; a matching deny always wins
//     - identity: "**"
//       permissions: [purge]
//       keys: ["prod-*"]            # optional; absent = every request
//
// Patterns are globs, see pattern.ts. Cross-field rules (bindings name known roles, key
// patterns are unique so rule ids are unambiguous) are checked here too.

import { z } from 'zod';
import { PERMISSIONS } from './permissions.js';
import { patternProblem, type PatternKind } from './pattern.js';

const ROLE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;
const REASON = /^[\x21-\x7e]{1,128}$/;

const permission = z.union([z.enum(PERMISSIONS), z.literal('*')], {
  error: (iss) =>
    `unknown permission ${JSON.stringify(iss.input)}; expected "*" or one of ${PERMISSIONS.join(', ')}`,
});
const permissions = z.array(permission).min(1, 'list at least one permission');

const pattern = (kind: PatternKind) =>
  z.string().superRefine((value, ctx) => {
    const problem = patternProblem(value, kind);
    if (problem) ctx.addIssue({ code: 'custom', message: `${problem} (got ${JSON.stringify(value)})` });
  });

const description = z.string().max(500).optional();

const binding = z.strictObject({
  identity: pattern('identity'),
  roles: z.array(z.string()).min(1, 'list at least one role'),
  keys: z.array(pattern('key')).min(1, 'omit "keys" to bind on every key').optional(),
  description,
});

const grant = z.strictObject({
  identity: pattern('identity'),
  permissions,
  description,
});

const reasons = z.strictObject({
  allowed: z
    .array(z.string().regex(REASON, 'a reason is 1..128 printable ASCII characters without spaces'))
    .min(1, 'list at least one allowed reason'),
  missing: z.enum(['allow', 'deny'], { error: 'missing must be "allow" or "deny"' }),
  permissions: permissions.optional(),
});

const keyRule = z.strictObject({
  key: pattern('key'),
  grants: z.array(grant).default([]),
  reasons: reasons.optional(),
  description,
});

const denyRule = z.strictObject({
  identity: pattern('identity'),
  permissions,
  keys: z.array(pattern('key')).min(1, 'omit "keys" to deny on every request').optional(),
  description,
});

export const policyDocumentSchema = z
  .strictObject({
    version: z.literal(1, { error: 'version must be 1' }),
    // Role names are checked below: a failing record-key schema only says "Invalid key".
    roles: z.record(z.string(), permissions).default({}),
    bindings: z.array(binding).default([]),
    keys: z.array(keyRule).default([]),
    deny: z.array(denyRule).default([]),
  })
  // Cross-field checks run once the shape is valid (zod skips refinements otherwise), so
  // a document with shape errors reports those first and these on the next attempt.
  .superRefine((doc, ctx) => {
    for (const name of Object.keys(doc.roles)) {
      if (!ROLE_NAME.test(name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['roles', name],
          message: `role names must match ${ROLE_NAME.source}`,
        });
      }
    }
    doc.bindings.forEach((b, i) => {
      b.roles.forEach((role, j) => {
        if (!Object.hasOwn(doc.roles, role)) {
          ctx.addIssue({
            code: 'custom',
            path: ['bindings', i, 'roles', j],
            message: `unknown role "${role}"`,
          });
        }
      });
    });
    const seen = new Map<string, number>();
    doc.keys.forEach((k, i) => {
      const first = seen.get(k.key);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['keys', i, 'key'],
          message: `key pattern "${k.key}" already has a rule at keys[${first}]; merge them`,
        });
      } else {
        seen.set(k.key, i);
      }
    });
  });

export type PolicyDocument = z.output<typeof policyDocumentSchema>;
/** The document as written (defaults not yet applied). */
export type PolicyDocumentInput = z.input<typeof policyDocumentSchema>;
