// grpc.health.v1 reflecting what the data plane depends on: NOT_SERVING while the HSM
// is not ready (re-initializing, closed) or the audit sink cannot record; SERVING again
// as soon as both recover. States are polled (cheap getters) on a short unref'd timer.
// A module re-initialization that began and ended between two polls still counts: the
// check after it reports NOT_SERVING once (watchers see the failure), the next one
// SERVING if the HSM is ready again.
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type { Server } from '@grpc/grpc-js';
import type { HsmBackend } from '../hsm/types.js';
import type { Logger } from '../log.js';
import type { AuditSink } from './pipeline.js';

export class HealthMonitor {
  readonly implementation: HealthImplementation;
  readonly #services: readonly string[];
  readonly #hsm: HsmBackend;
  readonly #audit: AuditSink | null;
  readonly #log: Logger;
  #status: ServingStatus = 'UNKNOWN';
  #timer: NodeJS.Timeout | undefined;
  #shuttingDown = false;
  #reinits = 0;

  constructor(opts: { hsm: HsmBackend; audit: AuditSink | null; log: Logger; services: string[] }) {
    this.#hsm = opts.hsm;
    this.#audit = opts.audit;
    this.#log = opts.log;
    this.#services = ['', ...opts.services];
    this.implementation = new HealthImplementation(
      Object.fromEntries(this.#services.map((s) => [s, 'UNKNOWN'])),
    );
    this.check();
  }

  get status(): ServingStatus {
    return this.#status;
  }

  addToServer(server: Server): void {
    this.implementation.addToServer(server as unknown as Parameters<HealthImplementation['addToServer']>[0]);
  }

  /** Starts polling every `intervalMs`. */
  start(intervalMs = 250): void {
    this.stop();
    this.#timer = setInterval(() => this.check(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Shutdown in progress: NOT_SERVING from now on, so load balancers move away. */
  markShuttingDown(): void {
    this.#shuttingDown = true;
    this.check();
  }

  /** Recomputes the status now and publishes a change. */
  check(): ServingStatus {
    const hsmState = this.#hsm.state();
    const reinits = hsmState === 'closed' ? this.#reinits : this.#hsm.counters().reinitializations;
    const failedMeanwhile = reinits !== this.#reinits;
    this.#reinits = reinits;
    const auditOk = this.#audit === null || this.#audit.healthy();
    const next: ServingStatus =
      !this.#shuttingDown && hsmState === 'ready' && !failedMeanwhile && auditOk ? 'SERVING' : 'NOT_SERVING';
    if (next !== this.#status) {
      const level = next === 'SERVING' ? 'info' : 'warn';
      this.#log[level](
        { health: next, hsm: hsmState, audit: auditOk ? 'ok' : 'unavailable' },
        'health changed',
      );
      this.#status = next;
      for (const s of this.#services) this.implementation.setStatus(s, next);
    }
    return next;
  }
}
