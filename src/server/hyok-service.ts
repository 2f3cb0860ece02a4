// hyok.v1.Hyok: the data-plane RPCs, each built from the pipeline steps.
import type { ServerDuplexStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { HyokError, OK_ITEM_STATUS, toHyokError, toItemStatus, type ItemStatus } from '../errors.js';
import type { ItemResult, Op } from '../hsm/types.js';
import type { KeyView, UsableVersion } from '../keys/types.js';
import type { Decision } from '../policy/index.js';
import {
  checkDekLength,
  checkKeyName,
  checkAad,
  checkRewrap,
  itemValue,
  prepareUnwrap,
  prepareWrap,
  rewrapAndZero,
  unwrapOp,
  unwrapResponse,
  wrapOp,
  wrapResponse,
  type PreparedUnwrap,
  type RewrapSpecMessage,
  type UnwrapInput,
  type UnwrapResponseMessage,
  type WrapInput,
  type WrapResponseMessage,
} from './dek-ops.js';
import {
  authorize,
  beginCall,
  decide,
  finishCall,
  hsmBatch,
  identify,
  recorded,
  unaryCall,
  rejectUnidentified,
  type AuditItem,
  type CallContext,
  type CallSpec,
  type CommonRequest,
  type PipelineDeps,
} from './pipeline.js';
import { HYOK_SERVICE_NAME } from './proto.js';
import { KIND_TO_ENUM } from '../proto-enums.js';
import type { CallerIdentity } from './identity.js';

function spec(method: string, audited = true): CallSpec {
  return { service: HYOK_SERVICE_NAME, method, plane: 'data', audited };
}

interface GenerateDataKeyRequest extends CommonRequest {
  keyName?: string;
  dekLength?: number;
  aad?: Uint8Array;
  rewrap?: RewrapSpecMessage | null;
}
interface WrapRequest extends CommonRequest, WrapInput {}
interface UnwrapRequest extends CommonRequest, UnwrapInput {}
interface BatchWrapRequest extends CommonRequest {
  items?: WrapInput[];
}
interface BatchUnwrapRequest extends CommonRequest {
  items?: UnwrapInput[];
}
interface GetKeyRequest extends CommonRequest {
  name?: string;
}
interface EchoRequest extends CommonRequest {
  payload?: Buffer;
}
interface StreamRequest {
  correlationId?: string;
  request?: UnwrapRequest | null;
}
interface StreamResponse {
  correlationId: string;
  status: ItemStatus;
  result: UnwrapResponseMessage | null;
}

function checkBatchSize(items: unknown[] | undefined, deps: PipelineDeps): unknown[] {
  const list = items ?? [];
  if (list.length > deps.limits.maxBatchItems) {
    throw new HyokError('BATCH_TOO_LARGE', {
      params: { count: list.length, limit: deps.limits.maxBatchItems },
    });
  }
  return list;
}

/** Key resolution for many items: each distinct key (and version) is resolved once per request. */
class BatchResolver {
  readonly #deps: PipelineDeps;
  readonly #ctx: CallContext;
  readonly #decisions = new Map<string, Decision>();
  readonly #keys = new Map<string, Promise<UsableVersion>>();
  /** Keys already resolved in this call: later items use them without a promise. */
  readonly #known = new Map<string, UsableVersion>();
  constructor(deps: PipelineDeps, ctx: CallContext) {
    this.#deps = deps;
    this.#ctx = ctx;
  }
  #lookup(k: string, fetch: () => Promise<UsableVersion>): UsableVersion | Promise<UsableVersion> {
    const known = this.#known.get(k);
    if (known) return known;
    let p = this.#keys.get(k);
    if (!p) {
      p = fetch().then((v) => {
        this.#known.set(k, v);
        return v;
      });
      p.catch(() => {});
      this.#keys.set(k, p);
    }
    return p;
  }
  decision(permission: 'wrapKey' | 'unwrapKey', name: string): Decision {
    let d = this.#decisions.get(name);
    if (!d) {
      d = decide(this.#deps, this.#ctx, permission, name);
      this.#decisions.set(name, d);
    }
    return d;
  }
  /** The key to wrap with: at once when an earlier item of this call resolved it. */
  forWrap(name: string): UsableVersion | Promise<UsableVersion> {
    return this.#lookup(name, () => this.#deps.keys.forWrap(name, 'wrapKey'));
  }
  forUnwrap(name: string, version: number): UsableVersion | Promise<UsableVersion> {
    return this.#lookup(`${name}\u0000${version}`, () =>
      this.#deps.keys.forUnwrap(name, version, 'unwrapKey'),
    );
  }
}

function denied(d: Decision): HyokError {
  return new HyokError('PERMISSION_DENIED', { metadata: { rule: d.rule } });
}

export function keyInfoMessage(v: KeyView): Record<string, unknown> {
  const state = v.state === 'enabled' ? 'ENABLED' : v.state === 'disabled' ? 'DISABLED' : 'DELETED';
  const algorithm = KIND_TO_ENUM[v.kind];
  const primary = v.versions.find((x) => x.version === v.primaryVersion);
  return {
    name: v.name,
    state,
    algorithm,
    primaryVersion: v.primaryVersion ?? 0,
    versions: v.versions.map((x) => ({
      version: x.version,
      state: x.state === 'enabled' ? 'ENABLED' : 'DISABLED',
      createdTime: { seconds: String(Math.floor(x.createdAt / 1000)), nanos: (x.createdAt % 1000) * 1e6 },
      publicKeySpki: x.publicKeySpki ?? Buffer.alloc(0),
    })),
    publicKeySpki: primary?.publicKeySpki ?? Buffer.alloc(0),
  };
}

export interface HyokServiceOptions {
  /** Most unwraps in flight on one UnwrapStream before reading pauses. Default 256. */
  streamMaxInFlight?: number;
}

/** The handlers of hyok.v1.Hyok, for `server.addService(hyokServiceDefinition(), …)`. */
export function createHyokService(
  deps: PipelineDeps,
  opts: HyokServiceOptions = {},
): UntypedServiceImplementation {
  const maxInFlight = opts.streamMaxInFlight ?? 256;

  async function singleOp(ctx: CallContext, op: Op) {
    const [r] = await hsmBatch(deps, ctx, [op]);
    return r;
  }

  const GenerateDataKey = unaryCall(
    deps,
    spec('GenerateDataKey'),
    async (ctx, req: GenerateDataKeyRequest) => {
      const keyName = checkKeyName(req.keyName);
      ctx.key = { name: keyName };
      const length = checkDekLength(req.dekLength, deps.limits);
      const aad = checkAad(req.aad, deps.limits);
      const rewrap = checkRewrap(req.rewrap);
      authorize(deps, ctx, 'wrapKey', keyName);
      const key = await deps.keys.forWrap(keyName, 'wrapKey');
      ctx.key = { name: keyName, version: key.version };
      const { bytes: dek } = itemValue<{ bytes: Buffer }>(await singleOp(ctx, { op: 'random', length }));
      const plan = wrapOp(dek, aad, key);
      let wrapped: WrapResponseMessage;
      try {
        wrapped = wrapResponse(plan, itemValue(await singleOp(ctx, plan.op)));
      } catch (e) {
        dek.fill(0);
        throw e;
      }
      ctx.details = { dekLength: length, rewrap: rewrap !== null };
      // Fields spelled out, not `{ ...wrapped, … }`: see Metrics.callFinished.
      const { envelope, keyName: name, keyVersion } = wrapped;
      if (rewrap) {
        const rewrapped = rewrapAndZero(dek, rewrap);
        return { envelope, keyName: name, keyVersion, plaintextDek: Buffer.alloc(0), rewrapped };
      }
      return { envelope, keyName: name, keyVersion, plaintextDek: dek, rewrapped: null };
    },
    'encrypt',
  );

  const Wrap = unaryCall(
    deps,
    spec('Wrap'),
    async (ctx, req: WrapRequest) => {
      const p = prepareWrap(req, deps.limits);
      ctx.key = { name: p.keyName };
      authorize(deps, ctx, 'wrapKey', p.keyName);
      const key = await deps.keys.forWrap(p.keyName, 'wrapKey');
      ctx.key = { name: p.keyName, version: key.version };
      const plan = wrapOp(p.dek, p.aad, key);
      try {
        return wrapResponse(plan, itemValue(await singleOp(ctx, plan.op)));
      } finally {
        p.dek.fill(0);
      }
    },
    'encrypt',
  );

  const Unwrap = unaryCall(
    deps,
    spec('Unwrap'),
    async (ctx, req: UnwrapRequest) => {
      const p = prepareUnwrap(req, deps.limits, recorded(deps, ctx));
      ctx.key = { name: p.env.keyName, version: p.env.keyVersion };
      if (p.digest !== null) ctx.details = { envelope: p.digest };
      authorize(deps, ctx, 'unwrapKey', p.env.keyName);
      const key = await deps.keys.forUnwrap(p.env.keyName, p.env.keyVersion, 'unwrapKey');
      const out = itemValue<{ plaintext: Buffer }>(await singleOp(ctx, unwrapOp(p, key)));
      return unwrapResponse(p, out.plaintext);
    },
    'decrypt',
  );

  /**
   * The shape both batch RPCs share: plan every item (validation, policy, key) with a
   * status per failure, run the planned ops as ONE HSM batch, then build each item's
   * result; every item gets its own audit entry. Items are planned in order; a plan
   * returns a promise only for a key no earlier item resolved (the first of each key),
   * so a batch on one key awaits once, not once per item.
   */
  async function runBatch<I, P extends { op: Op }, R>(
    ctx: CallContext,
    items: I[],
    plan: (item: I, a: AuditItem, i: number) => P | Promise<P>,
    finish: (p: P, r: ItemResult | undefined) => R,
    opHint: string,
  ): Promise<{ status: ItemStatus; result: R | null }[]> {
    ctx.items = items.length;
    const audit: AuditItem[] = items.map((_, i) => ({ code: '', details: { item: i } }));
    ctx.auditItems = audit;
    const out: { status: ItemStatus; result: R | null }[] = items.map(() => ({
      status: OK_ITEM_STATUS,
      result: null,
    }));
    const fail = (i: number, e: unknown, hint?: string): void => {
      const h = toHyokError(e, hint);
      out[i]!.status = toItemStatus(h);
      audit[i]!.code = h.code;
    };
    const plans = new Array<P | null>(items.length);
    for (let i = 0; i < items.length; i++) {
      try {
        const p = plan(items[i]!, audit[i]!, i);
        plans[i] = p instanceof Promise ? await p : p;
      } catch (e) {
        fail(i, e);
        plans[i] = null;
      }
    }
    const idx: number[] = [];
    const ops: Op[] = [];
    plans.forEach((p, i) => {
      if (p) {
        idx.push(i);
        ops.push(p.op);
      }
    });
    const results = await hsmBatch(deps, ctx, ops);
    idx.forEach((i, j) => {
      try {
        out[i]!.result = finish(plans[i]!, results[j]);
        audit[i]!.code = 'OK';
      } catch (e) {
        fail(i, e, opHint);
      }
    });
    return out;
  }

  const BatchWrap = unaryCall(
    deps,
    spec('BatchWrap'),
    async (ctx, req: BatchWrapRequest) => {
      const items = checkBatchSize(req.items, deps) as WrapInput[];
      const res = new BatchResolver(deps, ctx);
      try {
        const results = await runBatch(
          ctx,
          items,
          (item, a) => {
            const p = prepareWrap(item ?? {}, deps.limits);
            a.key = { name: p.keyName };
            const d = res.decision('wrapKey', p.keyName);
            a.decision = { allowed: d.allowed, rule: d.rule };
            if (!d.allowed) throw denied(d);
            const planned = (key: UsableVersion) => {
              a.key = { name: p.keyName, version: key.version };
              return wrapOp(p.dek, p.aad, key);
            };
            const key = res.forWrap(p.keyName);
            return key instanceof Promise ? key.then(planned) : planned(key);
          },
          (plan, r) => wrapResponse(plan, itemValue(r)),
          'encrypt',
        );
        return { results };
      } finally {
        for (const item of items) item?.plaintextDek?.fill(0);
      }
    },
    'encrypt',
  );

  const BatchUnwrap = unaryCall(
    deps,
    spec('BatchUnwrap'),
    async (ctx, req: BatchUnwrapRequest) => {
      const items = checkBatchSize(req.items, deps) as UnwrapInput[];
      const res = new BatchResolver(deps, ctx);
      const audited = recorded(deps, ctx);
      const results = await runBatch(
        ctx,
        items,
        (item, a, i) => {
          const p = prepareUnwrap(item ?? {}, deps.limits, audited);
          a.key = { name: p.env.keyName, version: p.env.keyVersion };
          if (p.digest !== null) a.details = { item: i, envelope: p.digest };
          const d = res.decision('unwrapKey', p.env.keyName);
          a.decision = { allowed: d.allowed, rule: d.rule };
          if (!d.allowed) throw denied(d);
          const planned = (key: UsableVersion) => ({ p, op: unwrapOp(p, key) });
          const key = res.forUnwrap(p.env.keyName, p.env.keyVersion);
          return key instanceof Promise ? key.then(planned) : planned(key);
        },
        (x, r) => unwrapResponse(x.p, itemValue<{ plaintext: Buffer }>(r).plaintext),
        'decrypt',
      );
      return { results };
    },
    'decrypt',
  );

  const GetKey = unaryCall(deps, spec('GetKey'), async (ctx, req: GetKeyRequest) => {
    const name = checkKeyName(req.name);
    ctx.key = { name };
    authorize(deps, ctx, 'get', name);
    return { key: keyInfoMessage(await deps.keys.describe(name)) };
  });

  const Echo = unaryCall(deps, spec('Echo', false), async (_ctx, req: EchoRequest) => ({
    payload: req.payload ?? Buffer.alloc(0),
  }));

  function UnwrapStream(call: ServerDuplexStream<StreamRequest, StreamResponse>): void {
    const s = spec('UnwrapStream');
    // The observer sees one call per stream message (started and finished in pairs).
    let identity: CallerIdentity;
    try {
      identity = identify(call);
    } catch (e) {
      deps.observer.callStarted(s.service, s.method);
      call.emit('error', rejectUnidentified(deps, s, e));
      return;
    }
    let inFlight = 0;
    let paused = false;
    // Reading also stops while the client does not read its responses (write buffer
    // full), so a slow reader cannot make the server queue unbounded output.
    let writeBlocked = false;
    const maybeResume = () => {
      if (paused && !writeBlocked && inFlight <= maxInFlight / 2) {
        paused = false;
        call.resume();
      }
    };
    call.on('drain', () => {
      writeBlocked = false;
      maybeResume();
    });
    let ended = false;
    let closed = false;
    // Items parsed in the same tick go to the HSM as one batch.
    let pending: { ctx: CallContext; p: PreparedUnwrap; op: Op; corr: string }[] = [];
    let flushScheduled = false;

    const done = () => {
      inFlight -= 1;
      maybeResume();
      if (ended && inFlight === 0 && !closed) {
        closed = true;
        call.end();
      }
    };

    const reply = async (
      ctx: CallContext | null,
      corr: string,
      err: unknown,
      result: UnwrapResponseMessage | null,
    ) => {
      let status: ItemStatus = OK_ITEM_STATUS;
      if (ctx) {
        const ge = await finishCall(deps, ctx, err, 'decrypt');
        if (ge) {
          status = toItemStatus(ge.hyok);
          result = null;
        }
      } else if (err) {
        status = toItemStatus(err);
      }
      if (!call.cancelled && !closed && !call.write({ correlationId: corr, status, result })) {
        writeBlocked = true;
        if (!paused) {
          paused = true;
          call.pause();
        }
      }
      done();
    };

    const flush = () => {
      flushScheduled = false;
      const batch = pending;
      pending = [];
      // One HSM batch for the items; its deadline is the stream's.
      const lead = batch[0]!.ctx;
      hsmBatch(
        deps,
        lead,
        batch.map((b) => b.op),
      ).then(
        (results) => {
          const share = lead.hsmMs / batch.length;
          batch.forEach((b, j) => {
            b.ctx.hsmMs = share;
            let r: UnwrapResponseMessage | null = null;
            let err: unknown = null;
            try {
              r = unwrapResponse(b.p, itemValue<{ plaintext: Buffer }>(results[j]).plaintext);
            } catch (e) {
              err = e;
            }
            void reply(b.ctx, b.corr, err, r);
          });
        },
        (e: unknown) => {
          for (const b of batch) void reply(b.ctx, b.corr, e, null);
        },
      );
    };

    const handle = async (msg: StreamRequest) => {
      deps.observer.callStarted(s.service, s.method);
      const corr = typeof msg.correlationId === 'string' ? msg.correlationId : '';
      const req = msg.request;
      let ctx: CallContext;
      try {
        ctx = beginCall(deps, s, call, identity, req ?? undefined);
      } catch (e) {
        const c = (e as { ctx?: CallContext }).ctx ?? null;
        await reply(c, corr, e, null);
        return;
      }
      try {
        if (!req) throw new HyokError('INVALID_REQUEST', { params: { detail: 'request is required' } });
        const p = prepareUnwrap(req, deps.limits, recorded(deps, ctx));
        ctx.key = { name: p.env.keyName, version: p.env.keyVersion };
        if (p.digest !== null) ctx.details = { envelope: p.digest, correlationId: corr.slice(0, 128) };
        authorize(deps, ctx, 'unwrapKey', p.env.keyName);
        const key = await deps.keys.forUnwrap(p.env.keyName, p.env.keyVersion, 'unwrapKey');
        ctx.checkDeadline();
        pending.push({ ctx, p, op: unwrapOp(p, key), corr });
        if (pending.length >= deps.limits.maxBatchItems) flush();
        else if (!flushScheduled) {
          flushScheduled = true;
          setImmediate(() => {
            if (pending.length > 0) flush();
            else flushScheduled = false;
          });
        }
      } catch (e) {
        await reply(ctx, corr, e, null);
      }
    };

    call.on('data', (msg: StreamRequest) => {
      inFlight += 1;
      if (!paused && inFlight >= maxInFlight) {
        paused = true;
        call.pause();
      }
      void handle(msg);
    });
    call.on('end', () => {
      ended = true;
      if (inFlight === 0 && !closed) {
        closed = true;
        call.end();
      }
    });
    call.on('error', () => {
      closed = true;
    });
    call.on('cancelled', () => {
      closed = true;
    });
  }

  return {
    GenerateDataKey,
    Wrap,
    Unwrap,
    BatchWrap,
    BatchUnwrap,
    UnwrapStream,
    GetKey,
    Echo,
  } as unknown as UntypedServiceImplementation;
}
