// One measured window of open-loop load on a server started with --trace-gc-nvp, added to
// that server's running totals: what bench:gc and bench:pretenure repeat per case and round.
import { addTotals, zeroTotals, type GcTotals, type GcTrace } from './gc-trace.js';
import { problems, runLoad, type LoadResult, type LoadSpec } from './run.js';

export interface WindowTotals {
  calls: number;
  gc: GcTotals;
  p99Ms: number[];
  problems: number;
}

export function zeroWindowTotals(): WindowTotals {
  return { calls: 0, gc: zeroTotals(), p99Ms: [], problems: 0 };
}

/**
 * An untimed warm-up of `warmupSeconds` (none when 0), then `seconds` measured with the
 * collector's figures for that window; both are added into `acc` and returned.
 */
export async function measureGcWindow(
  trace: GcTrace,
  pid: number,
  spec: (seconds: number) => LoadSpec,
  warmupSeconds: number,
  seconds: number,
  acc: WindowTotals,
): Promise<{ result: LoadResult; gc: GcTotals }> {
  if (warmupSeconds > 0) await runLoad(spec(warmupSeconds), pid);
  const w = await trace.window(() => runLoad(spec(seconds), pid));
  acc.calls += w.result.calls;
  acc.p99Ms.push(w.result.p99Ms);
  acc.problems += problems(w.result);
  addTotals(acc.gc, w.gc);
  return w;
}
