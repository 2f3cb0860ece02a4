// `hyokd serve`: load the configuration, prepare the embedded default when the config
// still points at it, open HSM, store, keys, policy and audit, and serve hyok.v1 and
// hyok.admin.v1.KeyAdmin over mutual TLS until SIGTERM/SIGINT. SIGHUP reloads the TLS
// certificates + trust bundle and the policy file without dropping established calls.
import { mkdirSync } from 'node:fs';
import { join, relative, isAbsolute } from 'node:path';
import type { Command } from 'commander';
import { AuditWriter, HsmAuditSigner } from '../audit/index.js';
import { ConfigError, loadConfig, readPin, type Config } from '../config/index.js';
import { NativeBackend } from '../hsm/native-backend.js';
import { Metrics, readinessFrom, startMetricsServer, type MetricsServer } from '../metrics/index.js';
import { KeyService } from '../keys/index.js';
import { createLogger, type Logger } from '../log.js';
import { PolicyHolder } from '../policy/index.js';
import { noopObserver, type CallObserver } from '../server/observer.js';
import { adminExtraService } from '../server/admin-service.js';
import { StoreQuorumGate, type QuorumGate } from '../server/quorum-gate.js';
import type { AuditSink, PipelineDeps } from '../server/pipeline.js';
import { HyokServer, type ExtraService } from '../server/server.js';
import { ReloadableTls } from '../server/tls-credentials.js';
import { openSqliteStore, type SqliteMetadataStore } from '../store/index.js';
import { lockHome, type HomeLock } from './home-lock.js';
import { disablePretenuring, PRETENURING_FLAG } from './pretenuring.js';
import {
  DEMO_KEY,
  ensureDemoKey,
  ensureSecurityDomain,
  prepareEmbeddedHome,
  usesDevPki,
  usesEmbeddedHsm,
} from './embedded-default.js';

const VERSION = '0.1.0';

/** CKA_ID of the audit checkpoint signing key pair on the token. */
export const AUDIT_KEY_ID = Buffer.from('hyokd-audit-signing-1', 'utf8');

export interface DaemonOptions {
  observer?: CallObserver;
  /** The services besides hyok.v1, built from the daemon's parts. Default: hyok.admin.v1.KeyAdmin. */
  services?: (parts: DaemonParts) => ExtraService[];
  log?: Logger;
}

export interface DaemonParts {
  config: Config;
  log: Logger;
  hsm: NativeBackend;
  store: SqliteMetadataStore;
  keys: KeyService;
  policy: PolicyHolder;
  audit: AuditWriter | null;
  /** The pipeline dependencies every service runs on. */
  deps: PipelineDeps;
  /** Holds the admin operations listed in config.quorum.operations. */
  quorum: QuorumGate;
}

export interface Daemon extends DaemonParts {
  server: HyokServer;
  /** Human-readable lines for the operator: what was created and how to call the server. */
  banner: string[];
  /** SIGHUP: TLS material and policy. */
  reload(): Promise<void>;
  shutdown(): Promise<{ drained: boolean }>;
}

async function openAuditSigner(hsm: NativeBackend): Promise<HsmAuditSigner> {
  try {
    return await HsmAuditSigner.load(hsm, AUDIT_KEY_ID);
  } catch {
    const { handles } = await hsm.run({ op: 'find', cls: 'private', id: AUDIT_KEY_ID });
    if (handles.length > 0) throw new Error('the audit signing key on the token is unusable');
    return HsmAuditSigner.generate(hsm, { id: AUDIT_KEY_ID, label: 'hyokd:audit-signing' });
  }
}

/** Starts the daemon from a loaded configuration. */
export async function startDaemon(config: Config, opts: DaemonOptions = {}): Promise<Daemon> {
  const log = opts.log ?? createLogger({ level: config.log.level });
  mkdirSync(config.home, { recursive: true, mode: 0o700 });
  const lock = lockHome(config.home);
  try {
    return await openDaemon(config, opts, log, lock);
  } catch (e) {
    lock.release();
    throw e;
  }
}

async function openDaemon(config: Config, opts: DaemonOptions, log: Logger, lock: HomeLock): Promise<Daemon> {
  const setup = await prepareEmbeddedHome(config);
  const created = [...setup.created];

  const pin = readPin(config);
  const hsm = await NativeBackend.open({
    modulePath: config.hsm.module,
    ...(config.hsm.tokenLabel !== null ? { tokenLabel: config.hsm.tokenLabel } : {}),
    ...(config.hsm.tokenSerial !== null ? { tokenSerial: config.hsm.tokenSerial } : {}),
    pin,
    ...(config.hsm.sessions !== null ? { sessions: config.hsm.sessions } : {}),
    queueCapacity: config.hsm.queueCapacity,
    sessionObjectCopies: config.hsm.sessionObjectCopies,
    sessionCopyRecheckMs: config.hsm.sessionCopyRecheckMs,
    opTimeoutMs: config.hsm.opTimeoutMs,
  });
  pin.fill(0);
  // Prometheus metrics (src/metrics): the call observer, audit commits, and scrape-time
  // reads of the HSM counters, audit stats and store. An explicit observer replaces it.
  const metrics = !opts.observer && config.metrics.enabled ? new Metrics({ version: VERSION }) : null;
  const store = openSqliteStore({ path: config.store.path });
  const keys = new KeyService({ hsm, store, log });
  let audit: AuditWriter | null = null;
  if (config.audit.enabled) {
    audit = await AuditWriter.open({
      dir: config.audit.dir,
      signer: await openAuditSigner(hsm),
      maxFileBytes: config.audit.rotateBytes,
      reserveBytes: config.audit.reserveBytes,
      maxFileAgeMs: config.audit.rotateAgeMs,
      checkpointEveryRecords: config.audit.checkpointEvery,
      checkpointEveryMs: config.audit.checkpointIntervalMs,
      writeTimeoutMs: config.audit.writeTimeoutMs,
      groupCommitMaxDelayMs: config.audit.groupCommitMaxDelayMs,
      logger: log,
      ...(metrics
        ? { onBatch: (info: { records: number; latencyMs: number }) => metrics.observeAuditCommit(info) }
        : {}),
    });
  } else {
    log.warn({}, 'audit log DISABLED by configuration (audit.enabled=false): use only for benchmarks');
  }
  const policy = await PolicyHolder.fromFile(config.policy.file);
  if (usesEmbeddedHsm(config) && (await ensureDemoKey(keys)))
    created.push(`demo KEK "${DEMO_KEY}" (AES-256)`);
  if (usesEmbeddedHsm(config)) {
    const domainId = await ensureSecurityDomain(keys, store);
    if (domainId !== null) created.push(`security domain ${domainId} (for keys backup/restore)`);
  }
  // config.quorum.operations: the admin operations held for M-of-N approval (none by default).
  const quorum: QuorumGate = new StoreQuorumGate({
    store,
    operations: config.quorum.operations,
    approvals: config.quorum.approvals,
    ttlMs: config.quorum.ttlMs,
  });

  const tls = await ReloadableTls.fromFiles(config.server.tls);
  const s = config.server;
  const deps: PipelineDeps = {
    hsm,
    keys,
    policy,
    audit: audit as AuditSink | null,
    observer: opts.observer ?? metrics ?? noopObserver,
    log,
    limits: {
      maxBatchItems: s.maxBatchItems,
      maxDekBytes: s.maxDekBytes,
      maxAadBytes: s.maxAadBytes,
      maxContextEntries: s.maxContextEntries,
    },
  };
  const parts: DaemonParts = { config, log, hsm, store, keys, policy, audit, deps, quorum };
  const services = opts.services
    ? opts.services(parts)
    : [adminExtraService({ deps, keys, policy, store, policyFile: config.policy.file, quorum })];
  const server = await HyokServer.start({
    deps,
    tls,
    listen: s.listen,
    transport: {
      keepaliveTimeMs: s.keepaliveTimeMs,
      keepaliveTimeoutMs: s.keepaliveTimeoutMs,
      maxConnectionAgeMs: s.maxConnectionAgeMs,
      maxConnectionAgeGraceMs: s.maxConnectionAgeGraceMs,
      maxMessageBytes: s.maxMessageBytes,
      drainTimeoutMs: s.drainTimeoutMs,
    },
    services,
    closeAfterDrain: [
      { name: 'keys', close: () => keys.stop() },
      ...(audit ? [{ name: 'audit', close: () => audit.close() }] : []),
      { name: 'hsm', close: () => hsm.close() },
      { name: 'store', close: () => store.close() },
      { name: 'lock', close: () => lock.release() },
    ],
  });

  let metricsServer: MetricsServer | null = null;
  if (metrics) {
    metrics.setSources({ hsm: () => hsm.counters(), audit: () => audit?.stats(), store });
    try {
      metricsServer = await startMetricsServer({
        listen: config.metrics.listen,
        metrics,
        ready: readinessFrom({ hsm: () => hsm.state(), audit: () => (audit ? audit.healthy() : true) }),
      });
      log.info({ listen: `${metricsServer.host}:${metricsServer.port}` }, 'serving Prometheus metrics');
    } catch (e) {
      // Not fatal: the data plane matters more than its dashboard.
      log.error(
        { listen: config.metrics.listen, error: (e as Error).message },
        'metrics server failed to start',
      );
    }
  }
  const banner = firstRunBanner(config, server.address, created, usesDevPki(config));
  if (metricsServer) banner.push(`Metrics: http://${metricsServer.host}:${metricsServer.port}/metrics`);
  return {
    ...parts,
    server,
    banner,
    async reload() {
      await server.reloadTls();
      const r = await policy.reload();
      if (r.ok) log.info({ generation: r.generation }, 'policy reloaded');
      else log.error({ problems: r.problems }, 'policy reload failed; keeping the previous policy');
    },
    shutdown: async () => {
      const r = await server.shutdown();
      await metricsServer?.close();
      return r;
    },
  };
}

function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}

/** The operator message: what was created, and exactly how to call the server. */
export function firstRunBanner(
  config: Config,
  address: string,
  created: string[],
  devPki: boolean,
): string[] {
  const lines: string[] = [];
  if (created.length > 0) {
    lines.push(`hyokd: first run in ${shown(config.home)}: created`);
    for (const c of created) lines.push(`  - ${c}`);
  }
  lines.push(`hyokd: serving hyok.v1 on ${address} (mutual TLS; health and reflection enabled)`);
  if (!devPki) return lines;
  const pki = join(config.home, 'pki');
  const bundle = shown(join(pki, 'client.bundle.pem'));
  const endpoint = `--endpoint ${address}`;
  const home = shown(config.home);
  const cli = 'node dist/src/cli/main.js';
  const env = home === 'var' ? '' : `HYOKD_HOME=${home} `;
  lines.push(
    '',
    'Call it with the CLI (client certificate bundle ' + bundle + '):',
    `  ${env}${cli} generate-data-key --key ${DEMO_KEY} ${endpoint} --bundle ${bundle}`,
    // A DEK of your own goes in a file, not in argv (the process list shows argv).
    `  (umask 077; head -c 32 /dev/urandom > ${home}/my.dek)`,
    `  ${env}${cli} wrap --key ${DEMO_KEY} --dek-file ${home}/my.dek ${endpoint} --bundle ${bundle}`,
    `  ${env}${cli} unwrap --envelope-base64 <envelope printed above> ${endpoint} --bundle ${bundle}`,
    `  ${env}${cli} get-key ${DEMO_KEY} ${endpoint} --bundle ${bundle}`,
    '',
    'or with grpcurl (the server offers reflection):',
    `  grpcurl -cacert ${shown(join(pki, 'ca.pem'))} -cert ${shown(join(pki, 'client.pem'))} -key ${shown(join(pki, 'client.key'))} -d '{"key_name":"${DEMO_KEY}"}' ${address} hyok.v1.Hyok/GenerateDataKey`,
    '',
    'Administer keys with the admin certificate bundle:',
    `  ${env}${cli} keys list ${endpoint} --bundle ${shown(join(pki, 'admin.bundle.pem'))}`,
    '',
    'SIGHUP reloads certificates and policy; SIGTERM drains and stops.',
  );
  return lines;
}

/** Registers `serve` on the program. */
export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the daemon (creates the embedded default under HYOKD_HOME on first run)')
    .option('-c, --config <file>', 'YAML configuration file (default $HYOKD_CONFIG, else built-in defaults)')
    .action(async (o: { config?: string }) => {
      const pretenuring = disablePretenuring() ? 'off' : `on (${PRETENURING_FLAG} given)`;
      let config: Config;
      try {
        config = loadConfig(o.config !== undefined ? { file: o.config } : {});
      } catch (e) {
        if (e instanceof ConfigError) {
          process.stderr.write(
            `hyokd: invalid configuration:\n${e.problems.map((p) => `  ${p}`).join('\n')}\n`,
          );
          process.exitCode = 2;
          return;
        }
        throw e;
      }
      const daemon = await startDaemon(config);
      const banner = [...daemon.banner, `V8 allocation-site pretenuring: ${pretenuring}`];
      process.stderr.write(banner.join('\n') + '\n');
      process.on('SIGHUP', () => {
        daemon.log.info({ signal: 'SIGHUP' }, 'reloading certificates and policy');
        void daemon.reload();
      });
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        daemon.log.info({ signal }, 'stopping');
        void daemon.shutdown().then(({ drained }) => {
          process.exitCode = drained ? 0 : 1;
          daemon.log.flush?.();
          setTimeout(() => process.exit(), 50).unref();
        });
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
