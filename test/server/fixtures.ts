// A real hyokd data plane for tests: SoftHSM2 token, SQLite store, KeyService, policy,
// audit directory, dev certificates and a gRPC server on 127.0.0.1:0, plus clients.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { AuditWriter, SoftwareAuditSigner } from '../../src/audit/index.js';
import { decodeStatusDetails } from '../../src/errors.js';
import type { NativeBackend, NativeBackendOptions } from '../../src/hsm/native-backend.js';
import { KeyService } from '../../src/keys/index.js';
import { silentLogger, type Logger } from '../../src/log.js';
import {
  createCa,
  DEV_ADMIN_ID,
  DEV_CLIENT_ID,
  issueClientCert,
  issueServerCert,
  type CertificateAuthority,
  type IssuedCertificate,
} from '../../src/pki/index.js';
import { policyFromValue, PolicyHolder } from '../../src/policy/index.js';
import { openSqliteStore, type SqliteMetadataStore } from '../../src/store/index.js';
import { type CallObserver, type CallReport } from '../../src/server/observer.js';
import { hyokGrpcObject } from '../../src/server/proto.js';
import { DEFAULT_TRANSPORT, HyokServer, type TransportOptions } from '../../src/server/server.js';
import { ReloadableTls } from '../../src/server/tls-credentials.js';
import type { PipelineDeps, RequestLimits } from '../../src/server/pipeline.js';
import { createTestToken, type TestToken } from '../helpers/softhsm.js';

export const OTHER_ID = 'spiffe://hyokd.dev/other';

export const TEST_POLICY = {
  version: 1,
  roles: { 'crypto-user': ['wrapKey', 'unwrapKey', 'get'], all: ['*'] },
  bindings: [
    { identity: DEV_CLIENT_ID, roles: ['crypto-user'] },
    { identity: DEV_ADMIN_ID, roles: ['all'] },
  ],
  keys: [{ key: 'other', grants: [{ identity: OTHER_ID, permissions: ['wrapKey', 'unwrapKey'] }] }],
};

export interface Harness {
  dir: string;
  token: TestToken;
  hsm: NativeBackend;
  store: SqliteMetadataStore;
  keys: KeyService;
  audit: AuditWriter;
  auditDir: string;
  ca: CertificateAuthority;
  server: HyokServer;
  tls: ReloadableTls;
  serverCert: IssuedCertificate;
  clientCert: IssuedCertificate;
  calls: CallReport[];
  /** `service/method` of every callStarted, in order. */
  started: string[];
  /** A client for hyok.v1.Hyok with the given certificate (default: the client identity). */
  client(cert?: IssuedCertificate, caPem?: string, opts?: Record<string, unknown>): HyokClient;
  close(): Promise<void>;
}

export interface HyokClient extends Client {
  [method: string]: unknown;
}

export interface HarnessOptions {
  hsm?: Partial<NativeBackendOptions>;
  limits?: Partial<RequestLimits>;
  transport?: Partial<TransportOptions>;
  log?: Logger;
  keys?: string[];
  streamMaxInFlight?: number;
}

export const TEST_LIMITS: RequestLimits = {
  maxBatchItems: 64,
  maxDekBytes: 64,
  maxAadBytes: 8192,
  maxContextEntries: 16,
};

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'hyokd-server-'));
  const token = await createTestToken();
  const hsm = await token.open({ sessions: 2, ...opts.hsm });
  const store = openSqliteStore({ path: join(dir, 'hyokd.db') });
  const keys = new KeyService({ hsm, store });
  for (const name of opts.keys ?? ['demo', 'other']) await keys.createKey({ name, kind: 'aes-256' });
  const auditDir = join(dir, 'audit');
  const audit = await AuditWriter.open({
    dir: auditDir,
    signer: new SoftwareAuditSigner(),
    probeIntervalMs: 50,
  });
  const ca = await createCa({ commonName: 'hyokd test CA' });
  const serverCert = await issueServerCert(ca);
  const clientCert = await issueClientCert(ca, { uri: DEV_CLIENT_ID });
  const tls = new ReloadableTls({
    cert: Buffer.from(serverCert.certPem),
    key: Buffer.from(serverCert.keyPem),
    clientCa: Buffer.from(ca.certPem),
  });
  const calls: CallReport[] = [];
  const started: string[] = [];
  const observer: CallObserver = {
    callStarted: (service, method) => started.push(`${service}/${method}`),
    callFinished: (r) => calls.push(r),
  };
  const deps: PipelineDeps = {
    hsm,
    keys,
    policy: new PolicyHolder(policyFromValue(TEST_POLICY)),
    audit,
    observer,
    log: opts.log ?? silentLogger(),
    limits: { ...TEST_LIMITS, ...opts.limits },
  };
  const server = await HyokServer.start({
    deps,
    tls,
    listen: '127.0.0.1:0',
    transport: { ...DEFAULT_TRANSPORT, drainTimeoutMs: 3000, ...opts.transport },
    healthPollMs: 50,
    hyok: opts.streamMaxInFlight ? { streamMaxInFlight: opts.streamMaxInFlight } : {},
    closeAfterDrain: [
      { name: 'audit', close: () => audit.close() },
      { name: 'hsm', close: () => hsm.close() },
    ],
  });
  const clients: Client[] = [];
  const Ctor = (hyokGrpcObject() as unknown as { hyok: { v1: { Hyok: new (...a: unknown[]) => Client } } })
    .hyok.v1.Hyok;
  const h: Harness = {
    dir,
    token,
    hsm,
    store,
    keys,
    audit,
    auditDir,
    ca,
    server,
    tls,
    serverCert,
    clientCert,
    calls,
    started,
    client(cert = clientCert, caPem = ca.certPem, copts = {}) {
      const c = new Ctor(
        `127.0.0.1:${server.port}`,
        credentials.createSsl(Buffer.from(caPem), Buffer.from(cert.keyPem), Buffer.from(cert.certPem)),
        copts,
      );
      clients.push(c);
      return c as HyokClient;
    },
    async close() {
      for (const c of clients) c.close();
      await server.shutdown();
      await store.close();
      token.cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

/** Promisified unary call: resolves the response, rejects the ServiceError. */
export function call<T = Record<string, unknown>>(
  client: HyokClient,
  method: string,
  req: Record<string, unknown>,
  opts: { deadline?: number | Date } = {},
): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = client[method] as (
      r: unknown,
      md: Metadata,
      o: unknown,
      cb: (e: ServiceError | null, v: T) => void,
    ) => void;
    fn.call(client, req, new Metadata(), opts, (e: ServiceError | null, v: T) =>
      e ? reject(e) : resolve(v),
    );
  });
}

/** The registry reason of a failed call (from grpc-status-details-bin). */
export function reasonOf(e: unknown): string | undefined {
  const md = (e as ServiceError).metadata;
  const bin = md?.get('grpc-status-details-bin')[0];
  if (!bin) return undefined;
  return decodeStatusDetails(bin as Buffer).errorInfo?.reason;
}

/** Settles a call and returns [error, value]. */
export async function settle<T>(p: Promise<T>): Promise<[ServiceError | null, T | null]> {
  try {
    return [null, await p];
  } catch (e) {
    return [e as ServiceError, null];
  }
}
