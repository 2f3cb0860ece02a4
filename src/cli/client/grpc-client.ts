// The gRPC client factory: mutual TLS from a client bundle (or separate key, cert and CA
// files), the hyok.v1 and hyok.admin.v1 protos loaded once per process, and a promise
// wrapper for unary calls that decodes hyokd's google.rpc.ErrorInfo on failure.
//
// The CLI commands, the benchmark (bench/) and tests share it:
//
//   const tls = await readClientTls({ bundle: 'var/pki/client.bundle.pem' });
//   const client = createHyokClient({ endpoint: '127.0.0.1:8443', tls });
//   const res = await callUnary<EchoResponse>(client, 'Echo', { payload }, { timeoutMs: 5000 });
//   client.close();
//
// The raw grpc-js client is returned on purpose: a load generator can call
// `client.Unwrap(req, metadata, { deadline }, cb)` directly without the promise layer.

import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { decodeStatusDetails, protoDir } from '../../errors.js';
import { parseBundle } from '../../pki/index.js';

/** The proto-loader options every hyokd component uses (see the protos' top comments). */
export const PROTO_LOADER_OPTIONS: Readonly<protoLoader.Options> = Object.freeze({
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

export interface HyokProtos {
  /** hyok.v1.Hyok (data plane). */
  Hyok: grpc.ServiceClientConstructor;
  /** hyok.admin.v1.KeyAdmin. */
  KeyAdmin: grpc.ServiceClientConstructor;
  /** The package definitions, e.g. for a test server's addService. */
  hyokDefinition: protoLoader.PackageDefinition;
  adminDefinition: protoLoader.PackageDefinition;
}

let protos: HyokProtos | undefined;

/** Loads both service protos once per process and returns the client constructors. */
export function loadHyokProtos(): HyokProtos {
  if (protos) return protos;
  const opts: protoLoader.Options = { ...PROTO_LOADER_OPTIONS, includeDirs: [protoDir()] };
  const hyokDefinition = protoLoader.loadSync('hyok/v1/hyok.proto', opts);
  const adminDefinition = protoLoader.loadSync('hyok/admin/v1/admin.proto', opts);
  const hyokPkg = grpc.loadPackageDefinition(hyokDefinition) as unknown as {
    hyok: { v1: { Hyok: grpc.ServiceClientConstructor } };
  };
  const adminPkg = grpc.loadPackageDefinition(adminDefinition) as unknown as {
    hyok: { admin: { v1: { KeyAdmin: grpc.ServiceClientConstructor } } };
  };
  protos = {
    Hyok: hyokPkg.hyok.v1.Hyok,
    KeyAdmin: adminPkg.hyok.admin.v1.KeyAdmin,
    hyokDefinition,
    adminDefinition,
  };
  return protos;
}

/** The three PEM parts of a client's mTLS identity. */
export interface ClientTls {
  keyPem: string;
  certPem: string;
  caPem: string;
}

export interface ClientTlsFiles {
  /** One PEM file: private key, client certificate, CA certificate(s). */
  bundle?: string;
  /** Or the three parts in separate files (all three required). */
  cert?: string;
  key?: string;
  ca?: string;
}

/** Largest PEM file we read (a bundle is a few KiB). */
const MAX_PEM_BYTES = 1024 * 1024;

async function readPemFile(path: string, what: string): Promise<string> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new ClientSetupError(`cannot read the ${what} file ${path} (${code})`);
  }
  if (buf.length > MAX_PEM_BYTES) throw new ClientSetupError(`the ${what} file ${path} is larger than 1 MiB`);
  return buf.toString('utf8');
}

/** A problem with the client's own setup (files, endpoint); never carries key bytes. */
export class ClientSetupError extends Error {
  override readonly name = 'ClientSetupError';
}

function requirePem(text: string, type: string, what: string, path: string): void {
  if (!text.includes(`-----BEGIN ${type}-----`)) {
    throw new ClientSetupError(`the ${what} file ${path} holds no "${type}" PEM block`);
  }
}

/**
 * Reads the client identity: a bundle, or cert + key + ca. Mixing the two, or giving
 * only some of cert/key/ca, is an error naming what is missing. Never echoes file content.
 */
export async function readClientTls(
  files: ClientTlsFiles,
  names: { bundle: string; cert: string; key: string; ca: string } = {
    bundle: 'bundle',
    cert: 'cert',
    key: 'key',
    ca: 'ca',
  },
): Promise<ClientTls> {
  const parts = { cert: files.cert, key: files.key, ca: files.ca };
  const given = Object.entries(parts).filter(([, v]) => v !== undefined);
  if (files.bundle !== undefined && given.length > 0) {
    throw new ClientSetupError(
      `give either ${names.bundle} or ${names.cert}/${names.key}/${names.ca}, not both`,
    );
  }
  if (files.bundle !== undefined) {
    const text = await readPemFile(files.bundle, 'bundle');
    try {
      return parseBundle(text);
    } catch (e) {
      throw new ClientSetupError(`${files.bundle}: ${(e as Error).message}`);
    }
  }
  if (given.length !== 3) {
    const missing = Object.entries(parts)
      .filter(([, v]) => v === undefined)
      .map(([k]) => names[k as 'cert' | 'key' | 'ca']);
    throw new ClientSetupError(
      `${names.cert}, ${names.key} and ${names.ca} go together; missing ${missing.join(', ')}`,
    );
  }
  const [certPem, keyPem, caPem] = await Promise.all([
    readPemFile(files.cert!, 'certificate'),
    readPemFile(files.key!, 'private key'),
    readPemFile(files.ca!, 'CA certificate'),
  ]);
  requirePem(certPem, 'CERTIFICATE', 'certificate', files.cert!);
  requirePem(caPem, 'CERTIFICATE', 'CA certificate', files.ca!);
  if (!/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(keyPem)) {
    throw new ClientSetupError(`the private key file ${files.key!} holds no PRIVATE KEY PEM block`);
  }
  return { certPem, keyPem, caPem };
}

export interface ClientOptions {
  /** host:port, e.g. 127.0.0.1:8443 or [::1]:8443. */
  endpoint: string;
  tls: ClientTls;
  /** Name to check in the server certificate instead of the endpoint's host. */
  serverName?: string;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
}

function credentials(tls: ClientTls): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(
    Buffer.from(tls.caPem, 'utf8'),
    Buffer.from(tls.keyPem, 'utf8'),
    Buffer.from(tls.certPem, 'utf8'),
  );
}

function channelOptions(opts: ClientOptions): grpc.ChannelOptions {
  const o: grpc.ChannelOptions = { ...opts.channelOptions };
  if (opts.serverName !== undefined) o['grpc.ssl_target_name_override'] = opts.serverName;
  return o;
}

/** A hyok.v1.Hyok client over mTLS. Close it when done. */
export function createHyokClient(opts: ClientOptions): grpc.Client {
  const { Hyok } = loadHyokProtos();
  return new Hyok(opts.endpoint, credentials(opts.tls), channelOptions(opts));
}

/** A hyok.admin.v1.KeyAdmin client over mTLS. Close it when done. */
export function createAdminClient(opts: ClientOptions): grpc.Client {
  const { KeyAdmin } = loadHyokProtos();
  return new KeyAdmin(opts.endpoint, credentials(opts.tls), channelOptions(opts));
}

/** A failed call, with hyokd's ErrorInfo decoded when the server sent one. */
export class CallError extends Error {
  override readonly name = 'CallError';
  /** gRPC status number. */
  readonly code: number;
  /** gRPC status name, e.g. FAILED_PRECONDITION. */
  readonly status: string;
  /** hyokd's stable code (ErrorInfo reason), or '' when the failure has none (e.g. no connection). */
  readonly reason: string;
  /** ErrorInfo metadata (safe strings, e.g. quorumRequestId). */
  readonly metadata: Record<string, string>;

  constructor(code: number, message: string, reason: string, metadata: Record<string, string>) {
    super(message);
    this.code = code;
    this.status = grpc.status[code] ?? `STATUS_${code}`;
    this.reason = reason;
    this.metadata = metadata;
  }
}

/** Turns a grpc-js ServiceError into a CallError, decoding grpc-status-details-bin. */
export function toCallError(err: grpc.ServiceError): CallError {
  let reason = '';
  let metadata: Record<string, string> = {};
  let message = err.details || err.message;
  const bin = err.metadata?.get('grpc-status-details-bin')[0];
  if (bin instanceof Buffer) {
    try {
      const st = decodeStatusDetails(bin);
      if (st.message) message = st.message;
      if (st.errorInfo) {
        reason = st.errorInfo.reason;
        metadata = st.errorInfo.metadata;
      }
    } catch {
      // Not a google.rpc.Status: keep the plain status.
    }
  }
  return new CallError(err.code, message, reason, metadata);
}

export interface CallOptions {
  /** Deadline, in milliseconds from now. */
  timeoutMs: number;
  metadata?: grpc.Metadata;
}

type UnaryMethod = (
  req: unknown,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: unknown) => void,
) => grpc.ClientUnaryCall;

/** Calls a unary method by its proto name ('Wrap', 'CreateKey' …); rejects with CallError. */
export function callUnary<Res>(
  client: grpc.Client,
  method: string,
  request: object,
  opts: CallOptions,
): Promise<Res> {
  const fn = (client as unknown as Record<string, UnaryMethod | undefined>)[method];
  if (typeof fn !== 'function') return Promise.reject(new TypeError(`unknown method ${method}`));
  return new Promise<Res>((resolve, reject) => {
    fn.call(
      client,
      request,
      opts.metadata ?? new grpc.Metadata(),
      { deadline: Date.now() + opts.timeoutMs },
      (err, res) => {
        if (err) reject(toCallError(err));
        else resolve(res as Res);
      },
    );
  });
}
