// A real hyokd with hyok.admin.v1.KeyAdmin plugged in: SoftHSM2 token, SQLite store,
// KeyService, a policy FILE behind a PolicyHolder, an audit directory, dev certificates
// (client, admin, a third identity) and a gRPC server on 127.0.0.1:0.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { AuditWriter, SoftwareAuditSigner, tailAudit, type AuditRecord } from '../../src/audit/index.js';
import { decodeStatusDetails } from '../../src/errors.js';
import type { NativeBackend } from '../../src/hsm/native-backend.js';
import { KeyService } from '../../src/keys/index.js';
import { silentLogger } from '../../src/log.js';
import {
  createCa,
  DEV_ADMIN_ID,
  DEV_CLIENT_ID,
  issueAdminCert,
  issueClientCert,
  issueServerCert,
  type CertificateAuthority,
  type IssuedCertificate,
} from '../../src/pki/index.js';
import { PolicyHolder } from '../../src/policy/index.js';
import { openSqliteStore, type SqliteMetadataStore } from '../../src/store/index.js';
import { adminGrpcObject } from '../../src/server/admin-proto.js';
import { adminExtraService } from '../../src/server/admin-service.js';
import { noopObserver, type CallReport } from '../../src/server/observer.js';
import { hyokGrpcObject } from '../../src/server/proto.js';
import { StoreQuorumGate, type QuorumOperation } from '../../src/server/quorum-gate.js';
import { DEFAULT_TRANSPORT, HyokServer } from '../../src/server/server.js';
import { ReloadableTls } from '../../src/server/tls-credentials.js';
import type { PipelineDeps } from '../../src/server/pipeline.js';
import { createTestToken, type TestToken } from '../helpers/softhsm.js';
import { TEST_LIMITS, type HyokClient } from './fixtures.js';

export const SCOPED_ID = 'spiffe://hyokd.dev/team-a-admin';

/** The client may only use keys; the admin may do everything; SCOPED_ID administers team-a-* keys only. */
export const ADMIN_TEST_POLICY = {
  version: 1,
  roles: {
    'crypto-user': ['wrapKey', 'unwrapKey'],
    all: ['*'],
    'key-admin': ['get', 'list', 'create', 'update', 'delete', 'recover', 'purge'],
  },
  bindings: [
    { identity: DEV_CLIENT_ID, roles: ['crypto-user'] },
    { identity: DEV_ADMIN_ID, roles: ['all'] },
    { identity: SCOPED_ID, roles: ['key-admin'], keys: ['team-a-*'] },
  ],
};

export interface AdminHarness {
  dir: string;
  token: TestToken;
  hsm: NativeBackend;
  store: SqliteMetadataStore;
  keys: KeyService;
  policy: PolicyHolder;
  policyFile: string;
  auditDir: string;
  ca: CertificateAuthority;
  server: HyokServer;
  clientCert: IssuedCertificate;
  adminCert: IssuedCertificate;
  scopedCert: IssuedCertificate;
  calls: CallReport[];
  /** A hyok.admin.v1.KeyAdmin client (default: the admin identity). */
  admin(cert?: IssuedCertificate): HyokClient;
  /** A hyok.v1.Hyok client (default: the client identity). */
  hyok(cert?: IssuedCertificate): HyokClient;
  /** The last n audit records. */
  auditTail(n?: number): Promise<AuditRecord[]>;
  close(): Promise<void>;
}

export async function startAdminHarness(
  opts: { quorum?: QuorumOperation[]; keys?: string[] } = {},
): Promise<AdminHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'hyokd-admin-'));
  const token = await createTestToken();
  const hsm = await token.open({ sessions: 2 });
  const store = openSqliteStore({ path: join(dir, 'hyokd.db') });
  const keys = new KeyService({ hsm, store });
  for (const name of opts.keys ?? ['demo']) await keys.createKey({ name, kind: 'aes-256' });
  const auditDir = join(dir, 'audit');
  const audit = await AuditWriter.open({
    dir: auditDir,
    signer: new SoftwareAuditSigner(),
    probeIntervalMs: 50,
  });
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, stringify(ADMIN_TEST_POLICY), { mode: 0o600 });
  const policy = await PolicyHolder.fromFile(policyFile);
  const ca = await createCa({ commonName: 'hyokd admin test CA' });
  const serverCert = await issueServerCert(ca);
  const clientCert = await issueClientCert(ca, { uri: DEV_CLIENT_ID });
  const adminCert = await issueAdminCert(ca);
  const scopedCert = await issueClientCert(ca, { uri: SCOPED_ID });
  const tls = new ReloadableTls({
    cert: Buffer.from(serverCert.certPem),
    key: Buffer.from(serverCert.keyPem),
    clientCa: Buffer.from(ca.certPem),
  });
  const calls: CallReport[] = [];
  const deps: PipelineDeps = {
    hsm,
    keys,
    policy,
    audit,
    observer: { callStarted: noopObserver.callStarted, callFinished: (r) => calls.push(r) },
    log: silentLogger(),
    limits: TEST_LIMITS,
  };
  const quorum = new StoreQuorumGate({ store, operations: opts.quorum ?? [] });
  const server = await HyokServer.start({
    deps,
    tls,
    listen: '127.0.0.1:0',
    transport: { ...DEFAULT_TRANSPORT, drainTimeoutMs: 3000 },
    healthPollMs: 50,
    services: [adminExtraService({ deps, keys, policy, store, quorum })],
    closeAfterDrain: [
      { name: 'audit', close: () => audit.close() },
      { name: 'hsm', close: () => hsm.close() },
    ],
  });
  const clients: Client[] = [];
  const AdminCtor = (
    adminGrpcObject() as unknown as { hyok: { admin: { v1: { KeyAdmin: new (...a: unknown[]) => Client } } } }
  ).hyok.admin.v1.KeyAdmin;
  const HyokCtor = (
    hyokGrpcObject() as unknown as { hyok: { v1: { Hyok: new (...a: unknown[]) => Client } } }
  ).hyok.v1.Hyok;
  const connect = (Ctor: new (...a: unknown[]) => Client, cert: IssuedCertificate): HyokClient => {
    const c = new Ctor(
      `127.0.0.1:${server.port}`,
      credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(cert.keyPem), Buffer.from(cert.certPem)),
      { 'grpc.max_send_message_length': 8 * 1024 * 1024 },
    );
    clients.push(c);
    return c as HyokClient;
  };
  return {
    dir,
    token,
    hsm,
    store,
    keys,
    policy,
    policyFile,
    auditDir,
    ca,
    server,
    clientCert,
    adminCert,
    scopedCert,
    calls,
    admin: (cert = adminCert) => connect(AdminCtor, cert),
    hyok: (cert = clientCert) => connect(HyokCtor, cert),
    async auditTail(n = 200) {
      const out: AuditRecord[] = [];
      for await (const r of tailAudit(auditDir, n)) out.push(r);
      return out;
    },
    async close() {
      for (const c of clients) c.close();
      await server.shutdown();
      await store.close();
      token.cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The ErrorInfo metadata of a failed call. */
export function errorMetadata(e: unknown): Record<string, string> {
  const bin = (e as ServiceError).metadata?.get('grpc-status-details-bin')[0];
  if (!bin) return {};
  return decodeStatusDetails(bin as Buffer).errorInfo?.metadata ?? {};
}

/** Request audit records of the admin plane for one method. */
export function adminRecords(recs: AuditRecord[], op: string): AuditRecord[] {
  return recs.filter((r) => r.type === 'request' && r.plane === 'admin' && r.op === op);
}
