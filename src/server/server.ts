// The hyokd gRPC server: mutual TLS always, hyok.v1 on the shared pipeline, health,
// reflection, keepalive / connection age from config, certificate reload and graceful
// shutdown.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Server, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { parseListen } from '../config/index.js';
import { HealthMonitor } from './health.js';
import { createHyokService, type HyokServiceOptions } from './hyok-service.js';
import type { PipelineDeps } from './pipeline.js';
import { HYOK_PROTO_FILE, HYOK_SERVICE_NAME, hyokServiceDefinition } from './proto.js';
import { reflectionDescriptors, type ProtoSource } from './reflection-descriptors.js';
import type { ReloadableTls } from './tls-credentials.js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { protoDir } from '../errors.js';

// grpc.health.v1 as grpc-health-check ships it, so reflection describes the health service
// too (grpcurl resolves every method it calls through reflection).
export const HEALTH_PROTO: ProtoSource = {
  includeDir: join(
    dirname(createRequire(import.meta.url).resolve('grpc-health-check/package.json')),
    'proto',
  ),
  file: 'health/v1/health.proto',
};

export interface TransportOptions {
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  maxConnectionAgeMs: number;
  maxConnectionAgeGraceMs: number;
  maxMessageBytes: number;
  drainTimeoutMs: number;
}

/** Another service to serve on the same server and pipeline (admin, …). */
export interface ExtraService {
  name: string;
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
  /** For reflection: its .proto file, relative to the proto directory. */
  protoFile?: string;
}

export interface HyokServerOptions {
  deps: PipelineDeps;
  tls: ReloadableTls;
  /** host:port; port 0 picks a free port. */
  listen: string;
  transport: TransportOptions;
  services?: ExtraService[];
  hyok?: HyokServiceOptions;
  healthPollMs?: number;
  /** Closed in order after the drain (HSM, audit writer, store …). */
  closeAfterDrain?: { name: string; close(): Promise<void> | void }[];
}

export const DEFAULT_TRANSPORT: TransportOptions = {
  keepaliveTimeMs: 60_000,
  keepaliveTimeoutMs: 20_000,
  maxConnectionAgeMs: 30 * 60_000,
  maxConnectionAgeGraceMs: 30_000,
  maxMessageBytes: 4 * 1024 * 1024,
  drainTimeoutMs: 10_000,
};

export class HyokServer {
  readonly grpc: Server;
  readonly health: HealthMonitor;
  readonly port: number;
  readonly host: string;
  readonly #opts: HyokServerOptions;
  #shutdown: Promise<{ drained: boolean }> | undefined;

  private constructor(
    opts: HyokServerOptions,
    grpc: Server,
    health: HealthMonitor,
    host: string,
    port: number,
  ) {
    this.#opts = opts;
    this.grpc = grpc;
    this.health = health;
    this.host = host;
    this.port = port;
  }

  static async start(opts: HyokServerOptions): Promise<HyokServer> {
    const listen = parseListen(opts.listen);
    if (!listen) throw new Error(`invalid listen address: ${opts.listen}`);
    const t = opts.transport;
    const grpc = new Server({
      'grpc.keepalive_time_ms': t.keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': t.keepaliveTimeoutMs,
      'grpc.max_connection_age_ms': t.maxConnectionAgeMs,
      'grpc.max_connection_age_grace_ms': t.maxConnectionAgeGraceMs,
      'grpc.max_receive_message_length': t.maxMessageBytes,
      'grpc.max_send_message_length': t.maxMessageBytes,
    });
    grpc.addService(hyokServiceDefinition(), createHyokService(opts.deps, opts.hyok));
    const reflected: ProtoSource[] = [{ includeDir: protoDir(), file: HYOK_PROTO_FILE }, HEALTH_PROTO];
    for (const s of opts.services ?? []) {
      grpc.addService(s.definition, s.implementation);
      if (s.protoFile) reflected.push({ includeDir: protoDir(), file: s.protoFile });
    }
    const health = new HealthMonitor({
      hsm: opts.deps.hsm,
      audit: opts.deps.audit,
      log: opts.deps.log,
      services: [HYOK_SERVICE_NAME, ...(opts.services ?? []).map((s) => s.name)],
    });
    health.addToServer(grpc);
    // One reflection service over every served package (grpc-js refuses a second handler
    // for the reflection methods), on descriptors shaped as protoc makes them
    // (reflection-descriptors.ts): the reflection package only reads fileDescriptorProtos.
    const descriptors = { files: { fileDescriptorProtos: reflectionDescriptors(reflected) } };
    new ReflectionService(descriptors as unknown as PackageDefinition).addToServer(grpc);
    const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
    const port = await new Promise<number>((resolve, reject) => {
      grpc.bindAsync(`${host}:${listen.port}`, opts.tls.credentials, (err, p) =>
        err ? reject(err) : resolve(p),
      );
    });
    health.start(opts.healthPollMs);
    opts.deps.log.info({ listen: `${listen.host}:${port}` }, 'serving hyok.v1 over mutual TLS');
    return new HyokServer(opts, grpc, health, listen.host, port);
  }

  get address(): string {
    return `${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
  }

  /** Re-reads the certificate, key and client CA bundle; new handshakes use them, open connections keep theirs. */
  async reloadTls(): Promise<{ ok: true; generation: number } | { ok: false; error: string }> {
    const r = await this.#opts.tls.reload();
    if (r.ok) this.#opts.deps.log.info({ generation: r.generation }, 'TLS certificates reloaded');
    else
      this.#opts.deps.log.error({ error: r.error }, 'TLS reload failed; keeping the previous certificates');
    return r;
  }

  /**
   * Graceful shutdown: health goes NOT_SERVING, no new connections or calls are
   * accepted, in-flight calls get up to drainTimeoutMs to finish (then are cancelled),
   * then closeAfterDrain resources close in order. Idempotent.
   */
  shutdown(): Promise<{ drained: boolean }> {
    this.#shutdown ??= this.#doShutdown();
    return this.#shutdown;
  }

  async #doShutdown(): Promise<{ drained: boolean }> {
    const log = this.#opts.deps.log;
    this.health.markShuttingDown();
    this.health.stop();
    log.info({ drainTimeoutMs: this.#opts.transport.drainTimeoutMs }, 'shutting down: draining calls');
    const drained = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.grpc.forceShutdown();
        resolve(false);
      }, this.#opts.transport.drainTimeoutMs);
      this.grpc.tryShutdown(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    for (const r of this.#opts.closeAfterDrain ?? []) {
      try {
        await r.close();
      } catch (e) {
        log.error({ resource: r.name, error: (e as Error).message }, 'close failed during shutdown');
      }
    }
    log.info({ drained }, 'shut down');
    return { drained };
  }
}
