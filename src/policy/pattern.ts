// Glob patterns for identities and key names, compiled once into anchored RegExps.
//
// The whole string must match. Every character is literal except:
//   `*`   any run of characters (possibly empty) that contains no `/`;
//   `**`  any run of characters (possibly empty), `/` included.
// Three or more stars in a row are refused. There is no `?`, no classes, no escapes.
// Matching is case-sensitive.
//
// Identities are SPIFFE IDs (`spiffe://trust.domain/path`), DNS names or CNs, so `*`
// stays within one path segment: `spiffe://hyokd.dev/svc/*` matches
// `spiffe://hyokd.dev/svc/billing` but not `spiffe://hyokd.dev/svc/billing/worker`;
// `spiffe://hyokd.dev/**` matches everything in the trust domain; `**` alone matches any
// identity, while `*` alone matches only identities without `/` (DNS names, CNs).
// Unlike a TLS wildcard, `*` also crosses dots: `*.svc.example` matches `a.b.svc.example`.
//
// Key names never contain `/` (see KEY_NAME_PATTERN), so in key patterns `*` and `**`
// both mean "any characters": `payments-*` matches `payments-eu` and `payments-`.
// Key patterns may only use key-name characters and `*`.

export type PatternKind = 'identity' | 'key';

export interface CompiledPattern {
  readonly source: string;
  readonly re: RegExp;
  /** true when the pattern has no wildcard (a plain string compare would do). */
  readonly literal: boolean;
}

const KEY_PATTERN_CHARS = /^[a-zA-Z0-9._*-]+$/;

/** A reason the pattern is invalid, or null when it is fine. */
export function patternProblem(source: string, kind: PatternKind): string | null {
  if (source.length === 0) return 'pattern must not be empty';
  if (source.length > 512) return 'pattern must be at most 512 characters';
  if (/\*{3,}/.test(source)) return 'three or more stars in a row are not a pattern ("*" or "**")';
  if (kind === 'key') {
    if (!KEY_PATTERN_CHARS.test(source))
      return 'key patterns may use only letters, digits, ".", "_", "-" and "*"';
  } else if (/[\s\p{Cc}]/u.test(source)) {
    return 'identity patterns must not contain whitespace or control characters';
  }
  return null;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

/** Compiles a pattern; throws if `patternProblem` would report one. */
export function compilePattern(source: string, kind: PatternKind): CompiledPattern {
  const problem = patternProblem(source, kind);
  if (problem) throw new Error(`bad ${kind} pattern "${source}": ${problem}`);
  let body = '';
  const parts = source.split(/(\*\*|\*)/);
  for (const part of parts) {
    if (part === '**') body += '.*';
    else if (part === '*') body += kind === 'key' ? '.*' : '[^/]*';
    else body += escape(part);
  }
  return { source, re: new RegExp(`^${body}$`, 's'), literal: !source.includes('*') };
}

export function matches(p: CompiledPattern, value: string): boolean {
  return p.literal ? p.source === value : p.re.test(value);
}
