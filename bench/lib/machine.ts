// What the figures were measured on: printed by every benchmark beside its results.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  softhsm: string;
  /** 1-minute load average when the run started: a hint of other work on a shared machine. */
  loadAtStart: number;
}

function cpuModel(): string {
  const fromOs = cpus()[0]?.model?.trim();
  if (fromOs) return fromOs;
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'));
    return line ? line.split(':')[1].trim() : 'unknown';
  } catch {
    return 'unknown';
  }
}

function softhsmVersion(): string {
  try {
    return execFileSync('softhsm2-util', ['--version'], { encoding: 'utf8', timeout: 5000 }).trim();
  } catch {
    return 'unknown';
  }
}

export function machineInfo(): MachineInfo {
  return {
    cpuModel: cpuModel(),
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    softhsm: softhsmVersion(),
    loadAtStart: Math.round(loadavg()[0] * 100) / 100,
  };
}

export function describeMachine(m: MachineInfo): string[] {
  return [
    `cpu:      ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB`,
    `kernel:   ${m.kernel}`,
    `node:     ${m.node}`,
    `softhsm:  ${m.softhsm}`,
    `load avg: ${m.loadAtStart} (1 min, at start)`,
  ];
}

/**
 * The opening lines every benchmark report shares: its title, the machine (plus any
 * `extra` lines, already worded), and the "method" heading the report continues under.
 */
export function reportHead(title: string, m: MachineInfo, extra: string[] = []): string[] {
  return [title, '', 'machine', ...[...describeMachine(m), ...extra].map((l) => '  ' + l), '', 'method'];
}
