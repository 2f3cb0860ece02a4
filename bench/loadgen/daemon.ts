// The server under test: the real daemon (`hyokd serve`, dist/src/cli/main.js) in a child
// process, so its CPU time can be read apart from the load generator's. Its embedded
// default provides the SoftHSM2 token, dev PKI, policy, SQLite store and the demo KEK
// under a HYOKD_HOME the benchmark owns; everything else is the shipped configuration,
// except for the overrides the caller passes (HYOKD_* environment variables).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../lib/paths.js';
import type { Target } from './types.js';

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

export interface Daemon {
  pid: number;
  port: number;
  target: Target;
  /** The daemon's /metrics URL, from its start-up banner (undefined when it serves none). */
  metricsUrl(): string | undefined;
  /** SIGTERM, wait for the drain; SIGKILL after a timeout. */
  stop(): Promise<void>;
}

const METRICS_LINE = /Metrics: (http:\/\/127\.0\.0\.1:\d+\/metrics)/;

/** The child's environment: ours without any HYOKD_* or SOFTHSM2_CONF, plus `overrides`. */
function daemonEnv(home: string, overrides: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('HYOKD_') && k !== 'SOFTHSM2_CONF') env[k] = v;
  }
  return {
    ...env,
    HYOKD_HOME: home,
    HYOKD_SERVER_LISTEN: '127.0.0.1:0',
    HYOKD_LOG_LEVEL: 'warn',
    ...overrides,
  };
}

/** SIGTERM, wait for the exit; SIGKILL after `timeoutMs`. */
export function stopChild(child: ChildProcess, timeoutMs = STOP_TIMEOUT_MS): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * The port a child announces on stderr (the first group of `banner`). Rejects, with the
 * end of its output, when it exits first or stays silent past `timeoutMs` (then killed).
 */
export function waitForPort(
  child: ChildProcess,
  banner: RegExp,
  what: string,
  opts: { timeoutMs: number; onStderr?: (chunk: string) => void; tail?: () => string },
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let err = '';
    const tail = () => (opts.tail?.() ?? err).slice(-1000);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not start within ${opts.timeoutMs} ms: ${tail()}`));
    }, opts.timeoutMs);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      opts.onStderr?.(d);
      const m = banner.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${signal ?? code}) while starting: ${tail()}`));
    });
  });
}

export interface DaemonOptions {
  /** Node flags before the script (after HYOKD_BENCH_DAEMON_NODE_ARGS), e.g. `--trace-gc-nvp`. */
  nodeArgs?: string[];
  /** Every chunk of the daemon's stdout, as it comes (what V8's --trace-gc* flags print). */
  onStdout?: (chunk: string) => void;
}

export async function startDaemon(
  home: string,
  overrides: Record<string, string> = {},
  opts: DaemonOptions = {},
): Promise<Daemon> {
  const main = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
  // HYOKD_BENCH_DAEMON_NODE_ARGS: extra node flags for the daemon only (e.g. `--cpu-prof
  // --cpu-prof-dir=/tmp/prof`, which NODE_OPTIONS does not accept).
  const nodeArgs = [
    ...(process.env.HYOKD_BENCH_DAEMON_NODE_ARGS ?? '').split(/\s+/).filter(Boolean),
    ...(opts.nodeArgs ?? []),
  ];
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, main, 'serve'], {
    env: daemonEnv(home, overrides),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  let metricsUrl: string | undefined;
  const keep = (d: string) => {
    tail = (tail + d).slice(-4000);
    metricsUrl ??= METRICS_LINE.exec(tail)?.[1];
  };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    keep(d);
    opts.onStdout?.(d);
  });
  const port = await waitForPort(child, /serving hyok\.v1 on 127\.0\.0\.1:(\d+)/, 'hyokd serve', {
    timeoutMs: START_TIMEOUT_MS,
    onStderr: keep,
    tail: () => tail,
  });
  const pki = join(home, 'pki');
  const target: Target = {
    port,
    caPem: readFileSync(join(pki, 'ca.pem'), 'utf8'),
    certPem: readFileSync(join(pki, 'client.pem'), 'utf8'),
    keyPem: readFileSync(join(pki, 'client.key'), 'utf8'),
  };
  let stopped: Promise<void> | undefined;
  return {
    pid: child.pid!,
    port,
    target,
    metricsUrl: () => metricsUrl,
    stop() {
      stopped ??= stopChild(child);
      return stopped;
    },
  };
}
