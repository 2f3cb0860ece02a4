// The request pipeline every RPC runs through, as small composable steps:
//
//   beginCall      identity (verified client certificate) → request id, context, deadline
//   authorize      policy decision (recorded for audit; denial → PERMISSION_DENIED)
//   (handler)      validation and key resolution (KeyResolver), specific to each RPC
//   hsmBatch       ONE HSM batch, started only if the deadline has not passed, capped
//                  to the remaining time
//   finishCall     audit record(s) appended and durable → observer report → the
//                  client-facing error (registry code, safe message, ErrorInfo)
//
// `unaryCall` wires them for a unary handler; the streaming service and other services
// (admin, REST adapters) call the steps directly. Nothing here depends on hyok.v1
// message types.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { handleUnaryCall, ServerUnaryCall, ServiceError, sendUnaryData } from '@grpc/grpc-js';
import { HyokError, toGrpcError, toHyokError, type HsmOpHint } from '../errors.js';
import { Memo } from '../memo.js';
import type { AuditEvent, AuditFields, AuditKeyRef } from '../audit/index.js';
import type { HsmBackend, ItemResult, Op } from '../hsm/types.js';
import type { KeyResolver } from '../keys/types.js';
import type { AuthzRequest, Decision, Permission } from '../policy/index.js';
import type { Logger } from '../log.js';
import { callIdentity, type AuthContext, type CallerIdentity } from './identity.js';
import type { CallObserver } from './observer.js';

/** Where audit events go: an AuditWriter, or null when auditing is disabled. */
export interface AuditSink {
  append(event: AuditEvent): Promise<void>;
  healthy(): boolean;
}

/** What authorizes: a PolicyHolder (or anything with its decide()). */
export interface PolicyDecider {
  decide(request: AuthzRequest): Decision;
  /** 'admin' when the policy gives the caller any key-management permission (metrics only). */
  callerClass(identity: string): 'admin' | 'client';
}

export interface RequestLimits {
  maxBatchItems: number;
  maxDekBytes: number;
  maxAadBytes: number;
  maxContextEntries: number;
}

export interface PipelineDeps {
  hsm: HsmBackend;
  keys: KeyResolver;
  policy: PolicyDecider;
  /** null: audit disabled (benchmarks only). */
  audit: AuditSink | null;
  observer: CallObserver;
  log: Logger;
  limits: RequestLimits;
}

export interface CallSpec {
  /** e.g. hyok.v1.Hyok */
  service: string;
  /** e.g. Unwrap */
  method: string;
  plane: 'data' | 'admin';
  /** false only for Echo-like calls that touch neither HSM nor audit. */
  audited: boolean;
}

/** The shape every request shares: request id and context map (both optional). */
export interface CommonRequest {
  requestId?: string;
  context?: Record<string, string>;
}

/** One audit record's worth of outcome (batches and streams produce one per item). */
export interface AuditItem {
  key?: AuditKeyRef;
  decision?: { allowed: boolean; rule: string };
  /** 'OK' or the registry code. */
  code: string;
  details?: AuditFields;
}

/** The minimal call surface the pipeline needs (any grpc-js server call has it). */
export interface CallLike {
  getAuthContext(): AuthContext | null;
  getPeer(): string;
  getDeadline(): Date | number;
  readonly cancelled?: boolean;
}

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
const MAX_CONTEXT_KEY = 64;
const MAX_CONTEXT_VALUE = 512;
const NOT_EVALUATED = Object.freeze({ allowed: false, rule: 'not-evaluated' });

/**
 * Frozen `{ allowed, rule }` and `{ code }` objects shared by every call with the same
 * values: the audit serializer makes the JSON of a frozen object once. Bounded (rules
 * come from the policy, codes from the error registry; a reload may add a few).
 */
type SharedDecision = Readonly<{ allowed: boolean; rule: string }>;
// Keyed by the rule or code itself (policy and registry constants, whose hashes V8 keeps):
// a key built per call would be hashed per call.
const allowedBy = new Memo<string, SharedDecision>(1024);
const deniedBy = new Memo<string, SharedDecision>(1024);
const sharedResults = new Memo<string, Readonly<{ code: string }>>(1024);

const decisionOf = (allowed: boolean, rule: string): SharedDecision => {
  const m = allowed ? allowedBy : deniedBy;
  return m.get(rule) ?? m.set(rule, Object.freeze({ allowed, rule }));
};
const resultOf = (code: string): Readonly<{ code: string }> =>
  sharedResults.get(code) ?? sharedResults.set(code, Object.freeze({ code }));

/** State of one call as it moves through the steps. */
export class CallContext {
  readonly spec: CallSpec;
  readonly started = performance.now();
  /** Absolute deadline in ms since the epoch; Infinity when the client set none. */
  readonly deadline: number;
  readonly peer: string;
  readonly identity: CallerIdentity;
  readonly requestId: string;
  readonly context: Record<string, string>;
  decision: { allowed: boolean; rule: string } | null = null;
  key: AuditKeyRef | undefined;
  /** Extra audit fields (ciphertext digest …). */
  details: AuditFields | undefined;
  /** Per-item outcomes (batches); when set, the call is audited with them (batchAuditEvents). */
  auditItems: AuditItem[] | null = null;
  items = 1;
  hsmMs = 0;
  #log: Logger | undefined;
  readonly #baseLog: Logger;

  constructor(
    spec: CallSpec,
    identity: CallerIdentity,
    peer: string,
    deadline: number,
    requestId: string,
    context: Record<string, string>,
    log: Logger,
  ) {
    this.spec = spec;
    this.identity = identity;
    this.peer = peer;
    this.deadline = deadline;
    this.requestId = requestId;
    this.context = context;
    this.#baseLog = log;
  }

  /** The request-scoped logger (created on first use: most calls never log). */
  get log(): Logger {
    this.#log ??= this.#baseLog.child({ requestId: this.requestId, method: this.spec.method });
    return this.#log;
  }

  remainingMs(): number {
    return this.deadline === Infinity ? Infinity : this.deadline - Date.now();
  }

  /** Throws DEADLINE_EXCEEDED when the deadline has passed: work is not started then. */
  checkDeadline(): void {
    if (this.remainingMs() <= 0) throw new HyokError('DEADLINE_EXCEEDED');
  }

  elapsedMs(): number {
    return performance.now() - this.started;
  }
}

function invalid(detail: string): HyokError {
  return new HyokError('INVALID_REQUEST', { params: { detail } });
}

function deadlineOf(call: CallLike): number {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) ? ms : Infinity;
}

/** Validates a request id: printable ASCII, at most 128 characters; '' → a new UUID. */
export function requestIdOf(value: unknown): string {
  if (value === undefined || value === null || value === '') return randomUUID();
  if (typeof value !== 'string' || !REQUEST_ID.test(value)) {
    throw invalid('request_id must be 1-128 printable ASCII characters without spaces');
  }
  return value;
}

/** Validates the context map: bounded entry count and sizes, string values. */
export function contextOf(value: unknown, maxEntries: number): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object') throw invalid('context must be a map of strings');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return {};
  if (entries.length > maxEntries)
    throw invalid(`context has ${entries.length} entries; the limit is ${maxEntries}`);
  const out: Record<string, string> = {};
  for (const [k, v] of entries) {
    if (k.length < 1 || k.length > MAX_CONTEXT_KEY) {
      throw invalid(`context keys must be 1-${MAX_CONTEXT_KEY} characters`);
    }
    if (typeof v !== 'string' || v.length > MAX_CONTEXT_VALUE) {
      throw invalid(`context value of "${k}" must be a string of at most ${MAX_CONTEXT_VALUE} characters`);
    }
    out[k] = v;
  }
  return out;
}

/**
 * Step 1: who is calling, and the request's common fields. Throws HyokError
 * UNAUTHENTICATED (no verified certificate) or INVALID_REQUEST; the caller still
 * finishes the call (finishCall) with that error when an identity exists.
 */
export function identify(call: CallLike): CallerIdentity {
  return callIdentity(call);
}

export function beginCall(
  deps: PipelineDeps,
  spec: CallSpec,
  call: CallLike,
  identity: CallerIdentity,
  request: CommonRequest | undefined,
): CallContext {
  const ctxMap = request?.context;
  let requestId: string;
  let context: Record<string, string>;
  let problem: HyokError | null = null;
  try {
    requestId = requestIdOf(request?.requestId);
  } catch (e) {
    requestId = randomUUID();
    problem = e as HyokError;
  }
  try {
    context = contextOf(ctxMap, deps.limits.maxContextEntries);
  } catch (e) {
    context = {};
    problem ??= e as HyokError;
  }
  const ctx = new CallContext(spec, identity, call.getPeer(), deadlineOf(call), requestId, context, deps.log);
  if (problem) throw Object.assign(problem, { ctx });
  return ctx;
}

/**
 * Step 2: the policy decision for one permission on one key (or none). Records the
 * decision on the context; throws PERMISSION_DENIED (metadata: the deciding rule).
 */
export function authorize(
  deps: PipelineDeps,
  ctx: CallContext,
  permission: Permission,
  keyName: string | undefined,
): Decision {
  const d = decide(deps, ctx, permission, keyName);
  ctx.decision = decisionOf(d.allowed, d.rule);
  if (!d.allowed) throw new HyokError('PERMISSION_DENIED', { metadata: { rule: d.rule } });
  return d;
}

/** The decision alone, not recorded (batches decide per key and record per item). */
export function decide(
  deps: PipelineDeps,
  ctx: CallContext,
  permission: Permission,
  keyName: string | undefined,
): Decision {
  const req: AuthzRequest = { identity: ctx.identity.identity, permission };
  if (keyName !== undefined) req.keyName = keyName;
  const reason = ctx.context.reason;
  if (reason !== undefined && reason !== '') req.reason = reason;
  return deps.policy.decide(req);
}

/**
 * Step 4: one HSM batch. Not started when the deadline has passed; the HSM gets the
 * remaining time as its queue timeout. Rejects only when the whole batch is refused
 * (QUEUE_FULL → RESOURCE_EXHAUSTED, HSM down → UNAVAILABLE).
 */
export async function hsmBatch(deps: PipelineDeps, ctx: CallContext, ops: Op[]): Promise<ItemResult[]> {
  if (ops.length === 0) return [];
  ctx.checkDeadline();
  const remaining = ctx.remainingMs();
  const t0 = performance.now();
  try {
    return await deps.hsm.batch(
      ops,
      remaining === Infinity ? undefined : { timeoutMs: Math.max(1, Math.floor(remaining)) },
    );
  } finally {
    ctx.hsmMs += performance.now() - t0;
  }
}

function auditEvent(ctx: CallContext, item: AuditItem, latencyMs: number): AuditEvent {
  const ev: AuditEvent = {
    type: 'request',
    plane: ctx.spec.plane,
    identity: ctx.identity.audit,
    op: ctx.spec.method,
    decision: item.decision ?? ctx.decision ?? NOT_EVALUATED,
    result: resultOf(item.code),
    latencyMs: Math.round(latencyMs * 1000) / 1000,
    peer: ctx.peer,
    requestId: ctx.requestId,
  };
  const key = item.key ?? ctx.key;
  if (key) ev.key = key;
  if (Object.keys(ctx.context).length > 0) ev.context = ctx.context;
  const details = item.details ?? ctx.details;
  if (details) ev.details = details;
  return ev;
}

/** Items per batch audit record (the audit sanitizer keeps at most 64 array entries). */
export const AUDIT_ITEMS_PER_RECORD = 64;

/**
 * A batch is audited as one record per AUDIT_ITEMS_PER_RECORD items, not one per item:
 * each item's index, key, version, decision rule, result code and envelope digest are in
 * `details.items`; the record's own `key` and `decision` are set when every item shares
 * them (else decision.rule is 'per-item'), and `result.code` is what the call returned.
 * An item still without a code (the whole call failed) gets the call's code.
 */
function batchAuditEvents(ctx: CallContext, callCode: string, latencyMs: number): AuditEvent[] {
  const items = ctx.auditItems!;
  const out: AuditEvent[] = [];
  for (let start = 0; start < items.length; start += AUDIT_ITEMS_PER_RECORD) {
    const chunk = items.slice(start, start + AUDIT_ITEMS_PER_RECORD);
    let key: AuditKeyRef | undefined = chunk[0]!.key;
    let decision = chunk[0]!.decision;
    const rows: AuditFields[] = chunk.map((it, j) => {
      if (key && (it.key?.name !== key.name || it.key?.version !== key.version)) key = undefined;
      if (decision && (it.decision?.allowed !== decision.allowed || it.decision?.rule !== decision.rule)) {
        decision = undefined;
      }
      const row: AuditFields = { i: start + j, code: it.code || callCode };
      if (it.key) {
        row.key = it.key.name;
        if (it.key.version !== undefined) row.version = it.key.version;
      }
      if (it.decision) row.rule = it.decision.rule;
      if (it.details?.envelope !== undefined) row.envelope = it.details.envelope;
      return row;
    });
    const allowed = chunk.every((it) => it.decision?.allowed === true);
    const ev = auditEvent(
      ctx,
      {
        code: callCode,
        decision: decision ?? { allowed, rule: 'per-item' },
        details: { items: rows, itemCount: items.length },
        ...(key ? { key } : {}),
      },
      latencyMs,
    );
    out.push(ev);
  }
  return out;
}

function grpcStatusName(code: number): string {
  return STATUS_NAMES[code] ?? String(code);
}

const STATUS_NAMES: Record<number, string> = {
  0: 'OK',
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  11: 'OUT_OF_RANGE',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  15: 'DATA_LOSS',
  16: 'UNAUTHENTICATED',
};

/** Logs what the client will not see: internal causes of INTERNAL/UNAVAILABLE errors. */
export function logFailure(ctx: CallContext, h: HyokError): void {
  if (h.code === 'INTERNAL' || h.code === 'HSM_UNAVAILABLE' || h.code === 'AUDIT_UNAVAILABLE') {
    const cause = h.cause as { code?: unknown; message?: unknown; name?: unknown } | undefined;
    ctx.log.error(
      {
        code: h.code,
        cause: cause
          ? { name: String(cause.name ?? ''), code: cause.code, message: String(cause.message ?? '') }
          : undefined,
      },
      'request failed',
    );
  }
}

/**
 * Whether the call gets an audit record (finishCall writes one exactly then): work done
 * only for the record, such as digests of ciphertexts, can be skipped otherwise.
 */
export function recorded(deps: PipelineDeps, ctx: CallContext): boolean {
  return ctx.spec.audited && deps.audit !== null;
}

/**
 * Last step: audit (durable before the response), observer, client-facing error.
 * `err` null = success. Returns the error to send (null for success). When the audit
 * append fails, a successful call becomes AUDIT_UNAVAILABLE (UNAVAILABLE): the response
 * never leaves without its record.
 */
export async function finishCall(
  deps: PipelineDeps,
  ctx: CallContext,
  err: unknown,
  opHint?: HsmOpHint,
): Promise<(ServiceError & { hyok: HyokError }) | null> {
  let h: HyokError | null = err === null || err === undefined ? null : toHyokError(err, opHint);
  const audit = recorded(deps, ctx) ? deps.audit : null;
  if (audit) {
    const latency = ctx.elapsedMs();
    const code = h ? h.code : 'OK';
    try {
      if (ctx.auditItems && ctx.auditItems.length > 0) {
        await Promise.all(batchAuditEvents(ctx, code, latency).map((ev) => audit.append(ev)));
      } else {
        await audit.append(auditEvent(ctx, { code }, latency));
      }
    } catch (e) {
      h = new HyokError('AUDIT_UNAVAILABLE', { cause: e });
    }
  }
  if (h) logFailure(ctx, h);
  if (deps.log.isLevelEnabled('debug')) {
    ctx.log.debug(
      { code: h ? h.code : 'OK', latencyMs: ctx.elapsedMs(), items: ctx.items },
      'request finished',
    );
  }
  deps.observer.callFinished({
    service: ctx.spec.service,
    method: ctx.spec.method,
    status: h ? grpcStatusName(h.grpcCode) : 'OK',
    reason: h ? h.code : '',
    identityClass: deps.policy.callerClass(ctx.identity.identity),
    seconds: ctx.elapsedMs() / 1000,
    ...(ctx.hsmMs > 0 ? { hsmSeconds: ctx.hsmMs / 1000 } : {}),
    items: ctx.items,
  });
  return h ? toGrpcError(h) : null;
}

/** For failures before a context exists (no verified identity): observer + error. */
export function rejectUnidentified(
  deps: PipelineDeps,
  spec: CallSpec,
  err: unknown,
): ServiceError & { hyok: HyokError } {
  const h = toHyokError(err);
  deps.observer.callFinished({
    service: spec.service,
    method: spec.method,
    status: grpcStatusName(h.grpcCode),
    reason: h.code,
    identityClass: 'anonymous',
    seconds: 0,
    items: 0,
  });
  return toGrpcError(h);
}

/**
 * A grpc-js unary handler running the pipeline around `handler`, which does the
 * RPC-specific part (validation, authorize, key resolution, hsmBatch) and returns the
 * response. `opHint` maps HSM data errors (decrypt → INVALID_CIPHERTEXT).
 */
export function unaryCall<Req extends CommonRequest, Res>(
  deps: PipelineDeps,
  spec: CallSpec,
  handler: (ctx: CallContext, request: Req) => Promise<Res>,
  opHint?: HsmOpHint,
): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    deps.observer.callStarted(spec.service, spec.method);
    let identity: CallerIdentity;
    try {
      identity = identify(call);
    } catch (e) {
      callback(rejectUnidentified(deps, spec, e));
      return;
    }
    let ctx: CallContext;
    try {
      ctx = beginCall(deps, spec, call, identity, call.request);
    } catch (e) {
      const c = (e as { ctx?: CallContext }).ctx;
      if (!c) {
        callback(rejectUnidentified(deps, spec, e));
        return;
      }
      void finishCall(deps, c, e).then((ge) => callback(ge));
      return;
    }
    handler(ctx, call.request).then(
      async (res) => {
        const ge = await finishCall(deps, ctx, call.cancelled ? new HyokError('CANCELLED') : null);
        if (ge) callback(ge);
        else callback(null, res);
      },
      async (e: unknown) => {
        callback(await finishCall(deps, ctx, e, opHint));
      },
    );
  };
}
