// System-wide CPU use from /proc/stat, to tell how much of the machine other processes
// took while a case was measured (the machine is shared): busy(system) - own process.
import { readFileSync } from 'node:fs';

/** Busy CPU seconds of the whole machine since boot (all cores), or NaN off Linux. */
export function systemBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is
    // already counted in user, so it is left out; idle and iowait are not busy.
    const busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    return busy / 100; // USER_HZ is 100 on Linux
  } catch {
    return Number.NaN;
  }
}

/** CPU seconds (user + system) used so far by this process's main (JS) thread, or NaN. */
export function mainThreadCpuSeconds(): number {
  try {
    const st = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const rest = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/**
 * Waits, at most `maxSeconds`, for a moment when the rest of the machine keeps fewer
 * than `maxBusyCores` cores busy (measured over 0.5 s windows). Returns the busy cores
 * of the last window. With maxSeconds = 0 it returns at once (NaN).
 */
export async function waitForQuiet(maxBusyCores: number, maxSeconds: number): Promise<number> {
  if (!(maxSeconds > 0)) return Number.NaN;
  const deadline = performance.now() + maxSeconds * 1000;
  let busy = Number.NaN;
  while (performance.now() < deadline) {
    const a = systemBusySeconds();
    await new Promise((r) => setTimeout(r, 500));
    busy = (systemBusySeconds() - a) / 0.5;
    if (!(busy >= maxBusyCores)) return busy;
  }
  return busy;
}
