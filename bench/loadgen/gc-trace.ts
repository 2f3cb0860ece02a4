// What V8's collector did in a child started with `--trace-gc-nvp`, read from the child's
// stdout: per scavenge the bytes it promoted to the old generation, per mark-compact its
// pause and how much of the pause was evacuation. bench/gc.ts uses it to find which layer
// of the server stack makes finished calls outlive the young generation (the cause of the
// mark-compacts that decide the open-loop p99, bench/RESULTS.md fourteenth pass).
//
// With --trace-gc-nvp V8 prints one line per collection of `name=value` pairs separated
// by spaces; `gc=s` is a scavenge, `gc=mc` a mark-compact, `gc=mmc` a minor mark-compact.
// Only the fields read here are relied on: gc, pause, evacuate, promoted.

export interface GcTotals {
  scavenges: number;
  /** Bytes the scavenges promoted to the old generation. */
  promotedBytes: number;
  scavengeMs: number;
  markCompacts: number;
  markCompactMs: number;
  /** The evacuation phase of those mark-compacts (young live objects and compacted pages copied). */
  evacuateMs: number;
  markCompactMaxMs: number;
}

export function zeroTotals(): GcTotals {
  return {
    scavenges: 0,
    promotedBytes: 0,
    scavengeMs: 0,
    markCompacts: 0,
    markCompactMs: 0,
    evacuateMs: 0,
    markCompactMaxMs: 0,
  };
}

/** The fields of one --trace-gc-nvp line, or null for any other line. */
export function parseNvpLine(line: string): Map<string, string> | null {
  if (!/(?:^|\s)gc=\S/.test(line)) return null;
  const fields = new Map<string, string>();
  for (const pair of line.trim().split(/\s+/)) {
    const eq = pair.indexOf('=');
    if (eq > 0) fields.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return fields.has('pause') ? fields : null;
}

function num(fields: Map<string, string>, name: string): number {
  const v = Number(fields.get(name));
  return Number.isFinite(v) ? v : 0;
}

/** Adds one parsed line to `t`. */
export function addCollection(t: GcTotals, fields: Map<string, string>): void {
  const kind = fields.get('gc');
  const pause = num(fields, 'pause');
  if (kind === 's') {
    t.scavenges++;
    t.scavengeMs += pause;
    t.promotedBytes += num(fields, 'promoted');
  } else if (kind === 'mc') {
    t.markCompacts++;
    t.markCompactMs += pause;
    t.evacuateMs += num(fields, 'evacuate');
    t.markCompactMaxMs = Math.max(t.markCompactMaxMs, pause);
  }
}

/** Adds `b` into `a` (the maximum is the larger of the two). */
export function addTotals(a: GcTotals, b: GcTotals): void {
  a.scavenges += b.scavenges;
  a.promotedBytes += b.promotedBytes;
  a.scavengeMs += b.scavengeMs;
  a.markCompacts += b.markCompacts;
  a.markCompactMs += b.markCompactMs;
  a.evacuateMs += b.evacuateMs;
  a.markCompactMaxMs = Math.max(a.markCompactMaxMs, b.markCompactMaxMs);
}

/** Totals over a child's stdout, split into lines as they come, for the current window. */
export class GcTrace {
  #window = zeroTotals();
  #partial = '';

  /** Feed it every chunk of the child's stdout. */
  push(chunk: string): void {
    const text = this.#partial + chunk;
    const lines = text.split('\n');
    this.#partial = lines.pop() ?? '';
    for (const line of lines) {
      const fields = parseNvpLine(line);
      if (!fields) continue;
      addCollection(this.#window, fields);
    }
  }

  /**
   * What the collector did while `fn` ran. V8 prints a line when the collection ends, so
   * `settleMs` after `fn` lets the last lines of the window arrive.
   */
  async window<T>(fn: () => Promise<T>, settleMs = 200): Promise<{ result: T; gc: GcTotals }> {
    this.#window = zeroTotals();
    const result = await fn();
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    return { result, gc: { ...this.#window } };
  }
}
