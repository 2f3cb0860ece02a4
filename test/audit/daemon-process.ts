/* eslint-disable @typescript-eslint/no-explicit-any -- messages of dynamically loaded gRPC clients are untyped */
// `hyokd serve` as a real child process for the end-to-end audit tests: an embedded
// default home in a temp folder, the port read from the banner, mTLS clients built from
// the dev PKI bundles, grpc health and the metrics endpoint, and the CLI run as a process.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, loadPackageDefinition, type Client } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { createHyokClient } from '../../src/cli/client/grpc-client.js';
import { parseBundle } from '../../src/pki/index.js';
import { typeScriptLoaders } from '../helpers/ts-child.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, lstatSync(p).mtimeMs);
  }
  return newest;
}

let cachedEntry: string[] | null = null;

/** node arguments that run the hyokd CLI: dist when it is newer than every source file, else the TypeScript entry. */
export function hyokdEntry(): string[] {
  if (cachedEntry) return cachedEntry;
  const dist = join(root, 'dist', 'src', 'cli', 'main.js');
  if (existsSync(dist) && lstatSync(dist).mtimeMs >= newestMtime(join(root, 'src'))) {
    cachedEntry = [dist];
  } else {
    // The TypeScript loader only: not tap's process-info hook (see daemonEnv).
    cachedEntry = [...typeScriptLoaders(), join(root, 'src', 'cli', 'main.ts')];
  }
  return cachedEntry;
}

/** The environment of a daemon (and the CLI) on `home`: embedded default, ports chosen by the OS. */
export function daemonEnv(home: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HYOKD_HOME: join(home, 'var'),
    HYOKD_SERVER_LISTEN: '127.0.0.1:0',
    HYOKD_METRICS_LISTEN: '127.0.0.1:0',
    HYOKD_CONFIG: '',
  };
}

/**
 * Spawns node with `args` as a production process would run: without tap's process-info
 * hook. tap's child_process wrapper adds that hook to NODE_OPTIONS of every child; it
 * installs signal-exit, which catches signals Node ignores by default (SIGXFSZ among
 * them) and re-raises them, so a daemon that hits a file-size limit would die where a
 * production daemon gets EFBIG. `env -u NODE_OPTIONS` execs node in the same process.
 */
function spawnNode(home: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, ...args], {
    cwd: home,
    env: { ...daemonEnv(home), ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export interface DaemonProcess {
  child: ChildProcess;
  pid: number;
  port: number;
  /** http://127.0.0.1:PORT (no path), from the banner. */
  metricsBase: string;
  stderr(): string;
  stdout(): string;
  /** Resolves when the process has exited: its code, or the signal that ended it. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `hyokd serve` on `<home>/var` and resolves once the banner is complete.
 * `env`: extra HYOKD_* overrides (e.g. HYOKD_AUDIT_DIR).
 */
export async function startDaemonProcess(
  home: string,
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<DaemonProcess> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const child = spawnNode(home, [...hyokdEntry(), 'serve'], opts.env);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  try {
    const ports = await new Promise<{ port: number; metricsBase: string }>((resolveStart, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`serve did not start within ${timeoutMs} ms:\n${err}\n${out}`)),
        timeoutMs,
      );
      const check = () => {
        const m = /serving hyok\.v1 on 127\.0\.0\.1:(\d+)/.exec(err);
        const metrics = /Metrics: (http:\/\/127\.0\.0\.1:\d+)\/metrics/.exec(err);
        if (m && metrics && err.includes('SIGTERM drains')) {
          clearTimeout(timer);
          resolveStart({ port: Number(m[1]), metricsBase: metrics[1]! });
        }
      };
      child.stderr!.on('data', check);
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`serve exited (${code ?? signal}):\n${err}\n${out}`));
      });
    });
    return {
      child,
      pid: child.pid!,
      ...ports,
      stderr: () => err,
      stdout: () => out,
      exited,
    };
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
}

/** Ends a daemon that may still run (teardown): SIGKILL, then wait for the exit. */
export async function killDaemon(d: DaemonProcess | null): Promise<void> {
  if (!d || d.child.exitCode !== null || d.child.signalCode !== null) return;
  d.child.kill('SIGKILL');
  await d.exited;
}

function clientTls(home: string, bundle = 'client.bundle.pem') {
  const b = parseBundle(readFileSync(join(home, 'var', 'pki', bundle), 'utf8'));
  return { caPem: b.caPem, keyPem: b.keyPem, certPem: b.certPem };
}

/** A hyok.v1.Hyok client with the dev client certificate. */
export function hyokClient(home: string, port: number): Client {
  return createHyokClient({ endpoint: `127.0.0.1:${port}`, tls: clientTls(home) });
}

/** grpc.health.v1 Check for `service`: SERVING, NOT_SERVING, … */
export async function healthStatus(home: string, port: number, service = 'hyok.v1.Hyok'): Promise<string> {
  const Health = (loadPackageDefinition({ 'grpc.health.v1.Health': healthService } as never) as any).grpc
    .health.v1.Health;
  const tls = clientTls(home);
  const c = new Health(
    `127.0.0.1:${port}`,
    credentials.createSsl(Buffer.from(tls.caPem), Buffer.from(tls.keyPem), Buffer.from(tls.certPem)),
  );
  try {
    return await new Promise<string>((res, rej) =>
      c.Check({ service }, { deadline: Date.now() + 5000 }, (e: Error | null, r: { status: string }) =>
        e ? rej(e) : res(r.status),
      ),
    );
  } finally {
    c.close();
  }
}

/** Runs the hyokd CLI as a process with the daemon's environment. */
export function runCli(
  home: string,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnNode(home, [...hyokdEntry(), ...args]);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((r) => child.on('exit', (code) => r({ code, stdout, stderr })));
}

/** Polls `what` every 50 ms until it holds or `ms` pass; returns the last answer. */
export async function waitFor(what: () => boolean | Promise<boolean>, ms = 10_000): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (await what()) return true;
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}
