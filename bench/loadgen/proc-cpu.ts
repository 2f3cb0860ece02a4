// CPU time of another process (the server child) from /proc/<pid>/stat, and of its main
// thread from /proc/<pid>/task/<pid>/stat: a Node server's JavaScript runs on its main
// thread, so that thread near one full core means the server side is saturated even
// when the process as a whole (native HSM workers included) uses less than the machine.
import { readFileSync } from 'node:fs';

const USER_HZ = 100;

function statSeconds(path: string): number {
  const text = readFileSync(path, 'utf8');
  // The command name (field 2) is in parentheses and may contain spaces.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
  return (Number(f[11]) + Number(f[12])) / USER_HZ;
}

/** Seconds the thread was runnable but waiting for a CPU (schedstat field 2), or NaN. */
function runQueueWaitSeconds(path: string): number {
  try {
    return Number(readFileSync(path, 'utf8').trim().split(/\s+/)[1]) / 1e9;
  } catch {
    return Number.NaN;
  }
}

export interface ProcCpu {
  /** user + system seconds of the whole process (all threads). */
  process: number;
  /** user + system seconds of its main thread. */
  mainThread: number;
  /**
   * Seconds its main thread spent ready to run but without a CPU: large when other
   * processes crowd the machine, which then, not the thread's own demand, caps its CPU.
   */
  mainThreadWait: number;
}

export function procCpu(pid: number): ProcCpu {
  return {
    process: statSeconds(`/proc/${pid}/stat`),
    mainThread: statSeconds(`/proc/${pid}/task/${pid}/stat`),
    mainThreadWait: runQueueWaitSeconds(`/proc/${pid}/task/${pid}/schedstat`),
  };
}

/** Seconds during which at least one task waited for a CPU (PSI "some"), or NaN without PSI. */
export function cpuPressureSeconds(): number {
  try {
    const some = readFileSync('/proc/pressure/cpu', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('some '));
    const total = /total=(\d+)/.exec(some ?? '');
    return total ? Number(total[1]) / 1e6 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}
