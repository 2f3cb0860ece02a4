// What the daemon's V8 did during a measured window: its mark-compacts (how many, and their
// pauses added up) and the event loop's longest lag, read from the daemon's own /metrics
// (prom-client's default nodejs_* families). On this machine these decide the open-loop
// p99: at 9,000 calls/s a mark-compact comes every ~1.6 s and stalls the loop 20-45 ms
// (bench/RESULTS.md, fourteenth pass), so a window's p99 depends on whether one fell in it.
//
// prom-client resets the loop-delay histogram at every scrape, so the scrape before a
// window starts its maximum afresh; the GC figures are counters, read as differences.

/** The three series this probe reads, in the exposition text; major GC series exist only after the first one. */
const MAJOR_COUNT = /^nodejs_gc_duration_seconds_count\{kind="major"\} (\S+)$/m;
const MAJOR_SUM = /^nodejs_gc_duration_seconds_sum\{kind="major"\} (\S+)$/m;
const LAG_MAX = /^nodejs_eventloop_lag_max_seconds (\S+)$/m;

export interface GcWindow {
  /** Mark-compacts that ended inside the window. */
  majorGcs: number;
  /** Their pauses, added up, in milliseconds. */
  majorGcMs: number;
  /** The event loop's longest delay in the window, in milliseconds (10-ms resolution). */
  loopLagMaxMs: number;
}

interface Reading {
  count: number;
  sum: number;
}

function read(text: string): Reading {
  const num = (re: RegExp): number => {
    const m = re.exec(text);
    return m ? Number(m[1]) : 0;
  };
  return { count: num(MAJOR_COUNT), sum: num(MAJOR_SUM) };
}

async function scrape(url: string): Promise<string | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.ok ? await res.text() : null;
  } catch {
    return null;
  }
}

/**
 * `measure(fn)` runs `fn` between two scrapes and gives its result with the window's GC
 * figures (null when the daemon serves no metrics or a scrape failed: the bench reports
 * its figures without them).
 */
export class GcProbe {
  constructor(private readonly url: () => string | undefined) {}

  async measure<T>(fn: () => Promise<T>): Promise<{ result: T; gc: GcWindow | null }> {
    const url = this.url();
    const before = url ? await scrape(url) : null;
    const result = await fn();
    const after = url && before !== null ? await scrape(url) : null;
    if (before === null || after === null) return { result, gc: null };
    const a = read(before);
    const b = read(after);
    const lag = LAG_MAX.exec(after);
    return {
      result,
      gc: {
        majorGcs: b.count - a.count,
        majorGcMs: (b.sum - a.sum) * 1000,
        loopLagMaxMs: lag ? Number(lag[1]) * 1000 : Number.NaN,
      },
    };
  }
}

export function fmtGc(gc: GcWindow | null): string {
  if (gc === null) return '';
  return `  mark-compacts ${gc.majorGcs} (${gc.majorGcMs.toFixed(0)} ms)  loop lag max ${gc.loopLagMaxMs.toFixed(0)} ms`;
}
