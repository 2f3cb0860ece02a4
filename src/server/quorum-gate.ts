// The quorum seam: sensitive admin operations ask a QuorumGate before they run.
//
// This wave holds operations but does not collect approvals: the M-of-N approval flow
// (approve/reject RPCs, approver policy, how many approvals) comes in the next wave and
// will fill in the 'approved' state this gate already honours. Until then a listed
// operation is always held: its request is stored as a pending request and the RPC fails
// with QUORUM_REQUIRED, ErrorInfo metadata `quorumRequestId`. The default list is empty,
// so every operation proceeds.
//
// Repeating a held call with context["quorum_request_id"] = that id proceeds only when
// the stored request is 'approved', unexpired, for the same operation, key, requester and
// request (a digest of the request's fields), and it is consumed ('executed') on the way,
// so one approval runs one call. While it is still 'pending' the same id is returned
// again; any other citation is held under a new id.
import { createHash } from 'node:crypto';
import { QUORUM_OPERATION_NAMES } from '../config/index.js';
import { HyokError } from '../errors.js';
import type { MetadataStore, PendingRequestRecord } from '../store/types.js';

/**
 * The admin operations that can be held for approval. One list, owned by the config
 * schema (which validates `quorum.operations` against it): DisableProtectedKey is
 * SetKeyState disabling a purge-protected key or version; EnablePurgeProtection and
 * InitSecurityDomain are held only when they would change something.
 */
export const QUORUM_OPERATIONS = QUORUM_OPERATION_NAMES;
export type QuorumOperation = (typeof QUORUM_OPERATIONS)[number];

export function isQuorumOperation(v: unknown): v is QuorumOperation {
  return typeof v === 'string' && (QUORUM_OPERATIONS as readonly string[]).includes(v);
}

/** What the gate is told about a call (never key material: blobs go in as digests). */
export interface QuorumRequest {
  /** The request's fields that decide what it does (names, flags, digests of blobs). */
  params: Record<string, string | number | boolean | null>;
  /** The caller's context map (quorum_request_id is read from it). */
  context: Record<string, string>;
}

export type QuorumVerdict = 'proceed' | { held: string /* pending request id */ };

export interface QuorumGate {
  /** Called after authorization and validation, before the operation touches anything. */
  check(
    op: QuorumOperation,
    keyName: string | null,
    identity: string,
    request: QuorumRequest,
  ): Promise<QuorumVerdict>;
  /** For ExplainPolicy: whether `op` needs approval and how many approvals. */
  requirement(op: QuorumOperation): { required: boolean; approvals: number };
}

/** A gate that never holds anything. */
export const openGate: QuorumGate = {
  check: () => Promise.resolve('proceed'),
  requirement: () => ({ required: false, approvals: 0 }),
};

export interface StoreQuorumGateOptions {
  store: MetadataStore;
  /** Operations that need approval. Default: none. */
  operations?: readonly QuorumOperation[];
  /** Approvals the next wave will ask for (reported by ExplainPolicy). Default 2. */
  approvals?: number;
  /** How long a held request waits for approval. Default 24 h. */
  ttlMs?: number;
  clock?: () => number;
}

/** The context key that cites an approved request when a held call is repeated. */
export const QUORUM_CONTEXT_KEY = 'quorum_request_id';

/** Stable digest of what a request asks for (order of fields does not matter). */
export function requestDigest(op: string, keyName: string | null, params: QuorumRequest['params']): string {
  const sorted = Object.keys(params)
    .sort()
    .map((k) => [k, params[k]]);
  return createHash('sha256')
    .update(JSON.stringify([op, keyName, sorted]))
    .digest('hex');
}

/** The gate of this wave: listed operations are stored as pending requests and held. */
export class StoreQuorumGate implements QuorumGate {
  readonly #store: MetadataStore;
  readonly #ops: ReadonlySet<string>;
  readonly #approvals: number;
  readonly #ttl: number;
  readonly #clock: () => number;

  constructor(opts: StoreQuorumGateOptions) {
    for (const op of opts.operations ?? []) {
      if (!isQuorumOperation(op)) throw new Error(`unknown quorum operation "${String(op)}"`);
    }
    this.#store = opts.store;
    this.#ops = new Set(opts.operations ?? []);
    this.#approvals = opts.approvals ?? 2;
    this.#ttl = opts.ttlMs ?? 24 * 3600_000;
    this.#clock = opts.clock ?? Date.now;
  }

  requirement(op: QuorumOperation): { required: boolean; approvals: number } {
    return this.#ops.has(op)
      ? { required: true, approvals: this.#approvals }
      : { required: false, approvals: 0 };
  }

  async check(
    op: QuorumOperation,
    keyName: string | null,
    identity: string,
    request: QuorumRequest,
  ): Promise<QuorumVerdict> {
    if (!this.#ops.has(op)) return 'proceed';
    const digest = requestDigest(op, keyName, request.params);
    const cited = request.context[QUORUM_CONTEXT_KEY];
    if (cited) {
      const rec = await this.#store.getPendingRequest(cited);
      // Still waiting: the same request keeps its id (no duplicate pending requests).
      if (rec && rec.state === 'pending' && this.#sameRequest(rec, op, keyName, identity, digest)) {
        return { held: rec.id };
      }
      if (rec && rec.state === 'approved' && this.#sameRequest(rec, op, keyName, identity, digest)) {
        // Consumed atomically: a second repeat of the same approval is held again.
        try {
          await this.#store.updatePendingRequest(rec.id, 'approved', { state: 'executed' });
          return 'proceed';
        } catch {
          // Someone else consumed it first: fall through and hold this call.
        }
      }
    }
    const held = await this.#store.createPendingRequest({
      op,
      keyName,
      requester: identity,
      expiresAt: this.#clock() + this.#ttl,
      payload: { requestDigest: digest, params: request.params },
    });
    return { held: held.id };
  }

  #sameRequest(
    rec: PendingRequestRecord,
    op: string,
    keyName: string | null,
    identity: string,
    digest: string,
  ): boolean {
    const payload = rec.payload as { requestDigest?: unknown } | null;
    return (
      rec.expiresAt > this.#clock() &&
      rec.op === op &&
      rec.keyName === keyName &&
      rec.requester === identity &&
      payload?.requestDigest === digest
    );
  }
}

/** The client-facing error for a held call. */
export function quorumRequired(pendingId: string): HyokError {
  return new HyokError('QUORUM_REQUIRED', { metadata: { quorumRequestId: pendingId } });
}
