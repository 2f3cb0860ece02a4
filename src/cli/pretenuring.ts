// V8's allocation-site pretenuring, turned off for the daemon. V8 watches object and
// array literals at each scavenge; when nearly all objects from one literal survived, it
// allocates that literal's later objects straight into the old generation. Measured here
// (bench:pretenure, bench/RESULTS.md seventeenth pass): under open-loop load some daemon
// processes, not others, took extra such decisions and from then on promoted ~3-5 KB per
// call instead of 0.1-0.5 KB, with several times the mark-compacts, for their whole
// life; with pretenuring off no process did. The likely path: an object allocated old
// keeps the young objects it points to alive through the scavenges (V8 treats old-to-new
// pointers as roots there), so they are promoted and die in the old generation.
import { setFlagsFromString } from 'node:v8';

/** The node flag that keeps V8's default; the daemon honours it when given explicitly. */
export const PRETENURING_FLAG = '--allocation-site-pretenuring';

/**
 * Turns allocation-site pretenuring off for this process, unless it was started with
 * `--allocation-site-pretenuring` (V8's default, kept for comparison). Call it before the
 * daemon starts serving. Returns whether it turned it off.
 */
export function disablePretenuring(execArgv: readonly string[] = process.execArgv): boolean {
  if (execArgv.includes(PRETENURING_FLAG)) return false;
  setFlagsFromString('--no-allocation-site-pretenuring');
  return true;
}
