// The connection flags every client command takes, and turning them into a client.
//
//   --endpoint host:port   default $HYOKD_ENDPOINT, else 127.0.0.1:8443
//   --bundle FILE          key + cert + CA in one PEM; default $HYOKD_HOME/pki/
//                          client.bundle.pem (data plane) or admin.bundle.pem (admin)
//   --cert FILE --cert-key FILE --ca FILE   the same as three files. The private key
//                          flag is --cert-key because --key names a KEK on the data plane.
//   --server-name NAME     name to check in the server certificate
//   --timeout MS           per-call deadline, default 10000
//   --request-id ID        audited request id (the server makes one when absent)
//   --context k=v          audited context, repeatable
//   --reason TEXT          context["reason"]: why the caller needs the key
//   --json                 machine-readable output

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Client } from '@grpc/grpc-js';
import type { Command } from 'commander';
import { parseListen } from '../../config/index.js';
import { devPkiPaths } from '../../pki/index.js';
import { UsageError, type CliIo } from './cli-io.js';
import { ClientSetupError, createAdminClient, createHyokClient, readClientTls } from './grpc-client.js';
import { collect, parseIntInRange, parsePairs } from './parse-input.js';

export const DEFAULT_ENDPOINT = '127.0.0.1:8443';
export const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_TIMEOUT_MS = 600_000;
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

export interface ConnectionFlags {
  endpoint?: string;
  bundle?: string;
  cert?: string;
  certKey?: string;
  ca?: string;
  serverName?: string;
  timeout?: string;
  requestId?: string;
  context?: string[];
  reason?: string;
  json?: boolean;
}

export type Plane = 'data' | 'admin';

/**
 * Adds the connection flags. `reason: false` leaves --reason off, for commands where
 * --reason means something else (policy explain).
 */
export function addConnectionOptions(cmd: Command, opts: { reason?: boolean } = {}): Command {
  cmd
    .option('--endpoint <host:port>', `server address (default $HYOKD_ENDPOINT or ${DEFAULT_ENDPOINT})`)
    .option(
      '--bundle <file>',
      'client bundle PEM: private key, certificate, CA (default under $HYOKD_HOME/pki)',
    )
    .option('--cert <file>', 'client certificate PEM (with --cert-key and --ca, instead of --bundle)')
    .option('--cert-key <file>', 'client private key PEM')
    .option('--ca <file>', 'CA certificate PEM that verifies the server')
    .option('--server-name <name>', 'name to expect in the server certificate (default: the endpoint host)')
    .option('--timeout <ms>', `deadline of each call in milliseconds (default ${DEFAULT_TIMEOUT_MS})`)
    .option('--request-id <id>', 'request id recorded in the audit log (default: chosen by the server)')
    .option('--context <key=value>', 'audit/policy context pair; repeatable', collect);
  if (opts.reason !== false) cmd.option('--reason <text>', 'why the key is needed (context "reason")');
  cmd.option('--json', 'print JSON for scripts');
  return cmd;
}

export interface Connection {
  client: Client;
  timeoutMs: number;
  /** request_id and context for the request message. */
  base: { requestId: string; context: Record<string, string> };
  close(): void;
}

/** $HYOKD_HOME (default ./var) resolved against the working directory. */
export function hyokdHome(io: CliIo): string {
  return resolve(io.cwd(), io.env.HYOKD_HOME || './var');
}

export function parseEndpoint(value: string, flag: string): string {
  const hp = parseListen(value);
  if (hp === null || hp.port === 0) {
    throw new UsageError(
      `${flag}: expected host:port with a port 1-65535, e.g. 127.0.0.1:8443, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** request_id and context from the flags, checked. `extra` pairs are added (and may not clash). */
export function requestBase(
  flags: ConnectionFlags,
  extra: Record<string, string> = {},
): { requestId: string; context: Record<string, string> } {
  const requestId = flags.requestId ?? '';
  if (flags.requestId !== undefined && !REQUEST_ID.test(requestId)) {
    throw new UsageError('--request-id: 1-128 printable ASCII characters without spaces');
  }
  const context = parsePairs(flags.context ?? [], '--context');
  if (flags.reason !== undefined) {
    if (Object.hasOwn(context, 'reason'))
      throw new UsageError('--reason and --context reason=…: give one, not both');
    if (flags.reason === '' || flags.reason.length > 1024)
      throw new UsageError('--reason: 1-1024 characters');
    context.reason = flags.reason;
  }
  for (const [k, v] of Object.entries(extra)) {
    if (Object.hasOwn(context, k))
      throw new UsageError(`--context ${k}=…: also set by another flag; give one`);
    context[k] = v;
  }
  return { requestId, context };
}

export function parseTimeout(flags: ConnectionFlags): number {
  return flags.timeout === undefined
    ? DEFAULT_TIMEOUT_MS
    : parseIntInRange(flags.timeout, '--timeout', 1, MAX_TIMEOUT_MS);
}

/** Checks every connection flag, reads the TLS files and makes the client. */
export async function openConnection(
  flags: ConnectionFlags,
  io: CliIo,
  plane: Plane,
  extraContext: Record<string, string> = {},
): Promise<Connection> {
  const endpoint = parseEndpoint(
    flags.endpoint ?? (io.env.HYOKD_ENDPOINT || DEFAULT_ENDPOINT),
    flags.endpoint !== undefined ? '--endpoint' : 'HYOKD_ENDPOINT',
  );
  const timeoutMs = parseTimeout(flags);
  const base = requestBase(flags, extraContext);
  const separate = flags.cert !== undefined || flags.certKey !== undefined || flags.ca !== undefined;
  let bundle = flags.bundle;
  if (bundle === undefined && !separate) {
    const paths = devPkiPaths(resolve(hyokdHome(io), 'pki'));
    bundle = plane === 'admin' ? paths.adminBundle : paths.clientBundle;
    if (!existsSync(bundle)) {
      throw new UsageError(
        `no client bundle at ${bundle}; pass --bundle FILE or --cert/--cert-key/--ca (or set HYOKD_HOME to the server's data folder)`,
      );
    }
  }
  let tls;
  try {
    tls = await readClientTls(
      { bundle, cert: flags.cert, key: flags.certKey, ca: flags.ca },
      { bundle: '--bundle', cert: '--cert', key: '--cert-key', ca: '--ca' },
    );
  } catch (e) {
    if (e instanceof ClientSetupError) throw new UsageError(e.message);
    throw e;
  }
  const opts = { endpoint, tls, ...(flags.serverName !== undefined ? { serverName: flags.serverName } : {}) };
  const client = plane === 'admin' ? createAdminClient(opts) : createHyokClient(opts);
  return { client, timeoutMs, base, close: () => client.close() };
}
