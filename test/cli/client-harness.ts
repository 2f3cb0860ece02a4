/* eslint-disable @typescript-eslint/no-explicit-any -- decoded proto messages in the stub server are untyped; tests read their fields directly */
// Test harness for the client commands: runs `hyokd …` in-process with a capturing
// CliIo, and starts a small real grpc-js server over mutual TLS (certificates from
// src/pki) whose handlers the test supplies.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { Command } from 'commander';
import { registerClientCommands, type CliIo } from '../../src/cli/client/index.js';
import { configureCommand } from '../../src/cli/client/command-kit.js';
import { loadHyokProtos } from '../../src/cli/client/grpc-client.js';
import {
  createCa,
  formatBundle,
  issueAdminCert,
  issueClientCert,
  issueServerCert,
  DEV_CLIENT_ID,
} from '../../src/pki/index.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

class ExitSignal extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  stdin?: string;
  cwd?: string;
}

/** Runs one command line (without the program name) and returns its exit code and output. */
export async function runCli(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  let code: number | undefined;
  const io: CliIo = {
    out: (s) => {
      stdout += s;
    },
    err: (s) => {
      stderr += s;
    },
    stdin: () => Readable.from([opts.stdin ?? '']),
    env: opts.env ?? {},
    cwd: () => opts.cwd ?? process.cwd(),
    setExitCode: (c) => {
      code = c;
    },
    exit: (c) => {
      throw new ExitSignal(c);
    },
  };
  const program = configureCommand(new Command('hyokd'), io);
  registerClientCommands(program, io);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (!(e instanceof ExitSignal)) throw e;
    code = e.code;
  }
  if (code === undefined) throw new Error(`command ended without an exit code: ${argv.join(' ')}\n${stderr}`);
  return { code, stdout, stderr };
}

/** JSON lines of stdout. */
export function jsonLines(stdout: string): unknown[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as unknown);
}

export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'hyokd-cli-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface TestPki {
  dir: string;
  caPem: string;
  clientBundle: string;
  adminBundle: string;
  /** A bundle whose CA is not the server's: the handshake must fail. */
  foreignBundle: string;
  server: { certPem: string; keyPem: string };
  clientCert: string;
  clientKey: string;
  caFile: string;
}

/** A real CA, server and client certificates in a temp dir, laid out like $HYOKD_HOME/pki. */
export async function makePki(t: { teardown(fn: () => void): void }): Promise<TestPki> {
  const dir = tempDir(t);
  const ca = await createCa();
  const server = await issueServerCert(ca);
  const client = await issueClientCert(ca, { uri: DEV_CLIENT_ID });
  const admin = await issueAdminCert(ca);
  const foreignCa = await createCa();
  const foreign = await issueClientCert(foreignCa, { uri: DEV_CLIENT_ID });
  const pki = join(dir, 'pki');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(pki, { mode: 0o700 });
  const w = (name: string, text: string): string => {
    const p = join(pki, name);
    writeFileSync(p, text, { mode: 0o600 });
    return p;
  };
  return {
    dir,
    caPem: ca.certPem,
    clientBundle: w(
      'client.bundle.pem',
      formatBundle({ keyPem: client.keyPem, certPem: client.certPem, caPem: ca.certPem }),
    ),
    adminBundle: w(
      'admin.bundle.pem',
      formatBundle({ keyPem: admin.keyPem, certPem: admin.certPem, caPem: ca.certPem }),
    ),
    foreignBundle: w(
      'foreign.bundle.pem',
      formatBundle({ keyPem: foreign.keyPem, certPem: foreign.certPem, caPem: ca.certPem }),
    ),
    server,
    clientCert: w('client.pem', client.certPem),
    clientKey: w('client.key', client.keyPem),
    caFile: w('ca.pem', ca.certPem),
  };
}

export type Handler = (request: any, call: grpc.ServerUnaryCall<any, any>) => unknown;

export interface StubServer {
  endpoint: string;
  /** Requests received, by method name, in order. */
  calls: Record<string, any[]>;
  /** Peer identity (URI SAN) of the last call, from the verified client certificate. */
  peers: string[];
}

/**
 * A real grpc-js server on 127.0.0.1:0 requiring client certificates, serving Hyok and
 * KeyAdmin with the given handlers (return a response object, or throw a ServiceError).
 * Unimplemented methods answer UNIMPLEMENTED.
 */
export async function startStubServer(
  t: { teardown(fn: () => Promise<void> | void): void },
  pki: TestPki,
  handlers: { hyok?: Record<string, Handler>; admin?: Record<string, Handler> },
): Promise<StubServer> {
  const { Hyok, KeyAdmin } = loadHyokProtos();
  const server = new grpc.Server();
  const calls: Record<string, any[]> = {};
  const peers: string[] = [];
  const impl = (
    def: grpc.ServiceDefinition,
    hs: Record<string, Handler> = {},
  ): grpc.UntypedServiceImplementation => {
    const out: grpc.UntypedServiceImplementation = {};
    for (const name of Object.keys(def)) {
      out[name] = ((call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => {
        (calls[name] ??= []).push(call.request);
        const san = call.getAuthContext?.()?.sslPeerCertificate?.subjectaltname;
        if (san) peers.push(san);
        const h = hs[name];
        if (!h) {
          cb({ code: grpc.status.UNIMPLEMENTED, details: `${name} not in this stub` });
          return;
        }
        try {
          Promise.resolve(h(call.request, call)).then(
            (res) => cb(null, res),
            (err) => cb(err),
          );
        } catch (err) {
          cb(err as grpc.ServiceError);
        }
      }) as grpc.handleUnaryCall<any, any>;
    }
    return out;
  };
  server.addService(Hyok.service, impl(Hyok.service, handlers.hyok));
  server.addService(KeyAdmin.service, impl(KeyAdmin.service, handlers.admin));
  const creds = grpc.ServerCredentials.createSsl(
    Buffer.from(pki.caPem),
    [{ private_key: Buffer.from(pki.server.keyPem), cert_chain: Buffer.from(pki.server.certPem) }],
    true,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  t.teardown(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  return { endpoint: `127.0.0.1:${port}`, calls, peers };
}

/** Timestamp helper for stub responses. */
export function ts(iso: string): { seconds: string; nanos: number } {
  return { seconds: String(Math.floor(Date.parse(iso) / 1000)), nanos: 0 };
}
