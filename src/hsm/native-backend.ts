// The production HsmBackend: hyokd's PKCS#11 addon (native/). One call to `batch()`
// crosses into native code once; the items run on the pool's worker sessions; the
// results come back in one crossing.
import { randomBytes } from 'node:crypto';
import { addon, type RawHsm, type RawOpenOptions } from './native.js';
import { HsmError, HyokdHsmCodes } from './errors.js';
import type {
  Capabilities,
  HsmBackend,
  HsmCounters,
  HsmState,
  ItemResult,
  KeyRef,
  MechanismInfo,
  ModuleInfo,
  Op,
  OpName,
  OpOf,
  OpValues,
  SubmitOptions,
  TokenInfo,
} from './types.js';

/** What the addon opens with (RawOpenOptions), plus what this layer adds. */
export interface NativeBackendOptions extends RawOpenOptions {
  /** Most time an item may wait to start, in milliseconds (a caller's `timeoutMs` can only shorten it). */
  opTimeoutMs?: number;
  /**
   * Single ops (`run()`, one-op `batch()`) queued in one event-loop turn are submitted
   * together at the end of the turn, or as soon as this many are waiting. Default
   * `NativeBackend.DEFAULT_COALESCE_MAX_OPS` (16).
   */
  coalesceMaxOps?: number;
  /**
   * Give each HsmError the stack of the synchronous call that submitted the op, by
   * capturing a stack on every `run()`/`batch()` (a few microseconds each). Default:
   * `NativeBackend.captureCallSites` (false). Without it an HsmError still names the
   * async callers that await the op (V8's async stack traces), at no cost until an
   * error is made.
   */
  captureCallSites?: boolean;
}

function toError(item: Record<string, unknown>, site: Error | undefined): HsmError {
  const err = new HsmError({
    code: String(item.code),
    rv: Number(item.rv),
    retriable: Boolean(item.retriable),
    message: String(item.message),
    op: item.op === undefined ? undefined : String(item.op),
  });
  // The stack of the caller who submitted the work, not of the completion callback.
  if (site?.stack) err.stack = `HsmError: ${err.message}\n${site.stack.split('\n').slice(1).join('\n')}`;
  return err;
}

function wholeBatchError(e: unknown, site: Error | undefined): unknown {
  if (e instanceof Error && typeof (e as { code?: unknown }).code === 'string' && 'rv' in e) {
    return toError(e as unknown as Record<string, unknown>, site);
  }
  return e;
}

type RawItem = Record<string, unknown> & { ok: boolean };

interface PendingOp {
  op: Op;
  timeoutMs: number | undefined;
  resolve: (r: RawItem) => void;
  reject: (e: unknown) => void;
}

/**
 * The addon's answer as result objects: a successful decrypt comes as its plaintext's
 * length, and becomes `{ ok: true, plaintext }` with a view of the answer's `bytes`, made
 * here because a Buffer and an object cost far less in JS than through Node-API.
 */
function unpackResults(raw: Awaited<ReturnType<RawHsm['submit']>>): RawItem[] {
  const bytes = raw.bytes;
  const out = new Array<RawItem>(raw.length);
  let off = 0;
  for (let i = 0; i < raw.length; i++) {
    const r = raw[i]!;
    if (typeof r === 'number') {
      if (bytes === undefined || off + r > bytes.byteLength) {
        throw new Error('the HSM module returned a plaintext length without its bytes');
      }
      out[i] = { ok: true, plaintext: Buffer.from(bytes, off, r) };
      off += r;
    } else {
      out[i] = r;
    }
  }
  return out;
}

/** Raw items to ItemResults; failed items become HsmErrors (made here, on the caller's await chain). */
function toResults(raw: RawItem[], site: Error | undefined): ItemResult[] {
  const out = new Array<ItemResult>(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const r = raw[i]!;
    out[i] = r.ok ? (r as unknown as ItemResult) : { ok: false, error: toError(r, site) };
  }
  return out;
}

export class NativeBackend implements HsmBackend {
  /**
   * The default of `NativeBackendOptions.captureCallSites` for backends opened without
   * it: set true in tests or when debugging to get the submitting call's stack in every
   * HsmError. Off in production: the capture costs more JS-thread time than the submit.
   */
  static captureCallSites = false;

  /**
   * Why 16: a burst of unary calls read from one socket is parsed in one turn of the
   * event loop (~15 us each). Waiting for the end of the turn left the HSM idle while the
   * loop parsed the whole burst, and then returned all results at once, so the calls
   * moved through HSM, audit and response in lockstep waves. Submitting every 16 lets the
   * HSM start on the first calls while the loop parses the rest, and their results come
   * back (and go to the audit log) while the HSM works on the later ones. Measured in
   * process on 64 concurrent Unwraps: 10.8k -> 16.6k calls/s in a paired run (12.5-14.4k
   * in later ones) and less JS time per call; 8 was slower again (more submissions and
   * audit batches).
   */
  static readonly DEFAULT_COALESCE_MAX_OPS = 16;

  readonly module: ModuleInfo;
  readonly token: TokenInfo;
  private readonly raw: RawHsm;
  private readonly opTimeoutMs: number | undefined;
  private readonly captureOption: boolean | undefined;
  private readonly coalesceMaxOps: number;
  private caps: Promise<Capabilities> | undefined;
  private closed = false;

  private constructor(
    raw: RawHsm,
    opTimeoutMs: number | undefined,
    captureCallSites: boolean | undefined,
    coalesceMaxOps: number,
  ) {
    this.raw = raw;
    this.opTimeoutMs = opTimeoutMs;
    this.captureOption = captureCallSites;
    this.coalesceMaxOps = coalesceMaxOps;
    const info = raw.info();
    this.module = info.module as unknown as ModuleInfo;
    this.token = info.token as unknown as TokenInfo;
  }

  static async open(opts: NativeBackendOptions): Promise<NativeBackend> {
    const site = new Error();
    try {
      const { opTimeoutMs, captureCallSites, coalesceMaxOps, ...rawOptions } = opts;
      const max = coalesceMaxOps ?? NativeBackend.DEFAULT_COALESCE_MAX_OPS;
      if (!Number.isInteger(max) || max < 1) throw new RangeError('coalesceMaxOps must be an integer >= 1');
      const raw = await addon().open(rawOptions);
      return new NativeBackend(raw, opTimeoutMs, captureCallSites, max);
    } catch (e) {
      throw wholeBatchError(e, site);
    }
  }

  mechanisms(): MechanismInfo[] {
    return this.raw.mechanisms() as unknown as MechanismInfo[];
  }

  async run<N extends OpName>(op: OpOf<N>, opts?: SubmitOptions): Promise<OpValues[N]> {
    const [item] = await this.batch([op], opts);
    if (!item.ok) throw item.error;
    const { ok: _ok, ...value } = item;
    return value as unknown as OpValues[N];
  }

  async batch(ops: Op[], opts?: SubmitOptions): Promise<ItemResult[]> {
    const single = Array.isArray(ops) && ops.length === 1;
    if (Array.isArray(ops) && ops.length === 0) return [];
    const site = (this.captureOption ?? NativeBackend.captureCallSites) ? new Error() : undefined;
    // The configured op timeout bounds every item, also under a client's longer deadline.
    const asked = opts?.timeoutMs;
    const timeoutMs =
      asked === undefined || (this.opTimeoutMs !== undefined && this.opTimeoutMs < asked)
        ? this.opTimeoutMs
        : asked;
    let raw: RawItem[];
    try {
      // Single ops (one per unary request) wait for the end of this event-loop turn and
      // cross into native code together: one submit and one completion for all of them.
      raw = single ? [await this.coalesce(ops[0]!, timeoutMs)] : await this.submitRaw(ops, timeoutMs);
    } catch (e) {
      throw wholeBatchError(e, site);
    }
    // Errors are made after the await, in this async function: without a captured site
    // their stacks still run through the awaiting callers.
    return toResults(raw, site);
  }

  // --- coalescing of single ops ------------------------------------------------------
  // Items queued during one turn of the event loop are submitted by a setImmediate, or
  // at once when `coalesceMaxOps` are waiting, as one native batch per distinct timeout.
  // Each item keeps its own result (and `batch` gives it its own caller stack). If the
  // combined submission is refused as a whole (a bad op, a full queue, a closed module),
  // every item is resubmitted alone, so each gets exactly the answer it would have had
  // without coalescing.
  private pending: PendingOp[] = [];
  private flushScheduled = false;
  private readonly flushAtTurnEnd = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  private coalesce(op: Op, timeoutMs: number | undefined): Promise<RawItem> {
    return new Promise<RawItem>((resolve, reject) => {
      this.pending.push({ op, timeoutMs, resolve, reject });
      if (this.pending.length >= this.coalesceMaxOps) {
        this.flush();
      } else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(this.flushAtTurnEnd);
      }
    });
  }

  private flush(): void {
    const all = this.pending;
    this.pending = [];
    if (all.length === 0) return;
    if (all.length === 1) {
      this.submitAlone(all[0]!);
      return;
    }
    // Almost always every item has the same timeout: then no grouping is needed.
    const first = all[0]!.timeoutMs;
    let same = true;
    for (let i = 1; i < all.length && same; i++) same = all[i]!.timeoutMs === first;
    if (same) {
      this.submitGroup(all, first);
      return;
    }
    // Clients set their own deadlines, so their timeouts rarely match to the millisecond.
    // Items still share a submission when their timeouts are close: a group runs under
    // its smallest timeout and takes in items whose own is at most 10% + 10 ms longer. An
    // item may so give up that much of its budget for the HSM step, never more; its
    // deadline is still honoured (the step ends no later than it would have).
    const untimed: PendingOp[] = [];
    const timed: PendingOp[] = [];
    for (const p of all) (p.timeoutMs === undefined ? untimed : timed).push(p);
    if (untimed.length > 0) this.submitGroupOrAlone(untimed, undefined);
    timed.sort((x, y) => x.timeoutMs! - y.timeoutMs!);
    for (let i = 0; i < timed.length;) {
      const min = timed[i]!.timeoutMs!;
      const limit = min * 1.1 + 10;
      let j = i + 1;
      while (j < timed.length && timed[j]!.timeoutMs! <= limit) j++;
      this.submitGroupOrAlone(timed.slice(i, j), min);
      i = j;
    }
  }

  private submitGroupOrAlone(group: PendingOp[], timeoutMs: number | undefined): void {
    if (group.length === 1) this.submitAlone(group[0]!);
    else this.submitGroup(group, timeoutMs);
  }

  /** raw.submit (which throws at once for ops it refuses), its answer unpacked. */
  private submitRaw(ops: Op[], timeoutMs: number | undefined): Promise<RawItem[]> {
    return this.raw.submit(ops, timeoutMs).then(unpackResults);
  }

  private submitGroup(group: PendingOp[], timeoutMs: number | undefined): void {
    const ops = new Array<Op>(group.length);
    for (let i = 0; i < group.length; i++) ops[i] = group[i]!.op;
    let promise;
    try {
      promise = this.submitRaw(ops, timeoutMs);
    } catch {
      for (const p of group) this.submitAlone(p);
      return;
    }
    promise.then(
      (raw) => {
        for (let i = 0; i < group.length; i++) {
          const p = group[i]!;
          const r = raw[i];
          if (r === undefined) p.reject(new Error('the HSM module returned fewer results than ops'));
          else p.resolve(r);
        }
      },
      () => {
        for (const p of group) this.submitAlone(p);
      },
    );
  }

  private submitAlone(p: PendingOp): void {
    let promise;
    try {
      promise = this.submitRaw([p.op], p.timeoutMs);
    } catch (e) {
      p.reject(e);
      return;
    }
    promise.then((raw) => {
      const r = raw[0];
      if (r === undefined) p.reject(new Error('the HSM module returned fewer results than ops'));
      else p.resolve(r);
    }, p.reject);
  }

  async evictKey(ref: KeyRef): Promise<void> {
    this.raw.evictKey(ref);
  }

  counters(): HsmCounters {
    return this.raw.counters() as unknown as HsmCounters;
  }

  state(): HsmState {
    const s = this.raw.counters().state;
    return s === 'ready' || s === 'recovering' ? s : 'closed';
  }

  /**
   * What the token can do, found by trying it (once, cached): RSA-OAEP with SHA-1 and
   * SHA-256 on a session key pair, and a session copy of a token AES key. Mechanisms the
   * token does not list at all are reported from its mechanism list.
   */
  capabilities(): Promise<Capabilities> {
    this.caps ??= this.probe();
    return this.caps;
  }

  private async probe(): Promise<Capabilities> {
    const mechs = new Set(this.mechanisms().map((m) => m.name));
    const id = randomBytes(16);
    const usage = { encrypt: true, decrypt: true };
    const pair = await this.run({
      op: 'generateKeyPair',
      kind: 'rsa',
      modulusBits: 2048,
      publicSpec: { id, label: 'hyokd-probe', token: false, usage: { encrypt: true } },
      privateSpec: { id, label: 'hyokd-probe', token: false, usage: { decrypt: true } },
    });
    const pub: KeyRef = { id, cls: 'public', token: false };
    const [sha1, sha256] = await this.batch([
      { op: 'rsaEncrypt', key: pub, hash: 'sha1', data: Buffer.alloc(32) },
      { op: 'rsaEncrypt', key: pub, hash: 'sha256', data: Buffer.alloc(32) },
    ]);
    const aesId = randomBytes(16);
    const aes = await this.run({
      op: 'generateKey',
      keyBits: 256,
      spec: { id: aesId, label: 'hyokd-probe', token: true, usage },
    });
    const [copy] = await this.batch([{ op: 'copyObject', handle: aes.handle, token: false }]);
    const cleanup: Op[] = [
      { op: 'destroy', handle: pair.publicHandle },
      { op: 'destroy', handle: pair.privateHandle },
      { op: 'destroy', handle: aes.handle },
    ];
    if (copy.ok) cleanup.push({ op: 'destroy', handle: (copy as { handle: number }).handle });
    await this.batch(cleanup);
    return {
      oaepSha1: sha1.ok,
      oaepSha256: sha256.ok,
      rsaAesKeyWrap: mechs.has('CKM_RSA_AES_KEY_WRAP'),
      aesKeyWrapPad: mechs.has('CKM_AES_KEY_WRAP_PAD'),
      sessionCopy: copy.ok,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.raw.close();
  }

  /** Test hook: close every session on the slot, as a token reset would. */
  testCloseAllSessions(): void {
    this.raw._testCloseAllSessions();
  }

  /** Fault injection: the next `count` operations fail with `code` (a CKR_* name) without reaching the token. */
  injectFault(code: string, count: number): void {
    const rv = addon().rvValue(code);
    if (rv === undefined)
      throw new HsmError({
        code: HyokdHsmCodes.UNSUPPORTED,
        rv: -1,
        retriable: false,
        message: `unknown return value name ${code}`,
      });
    this.raw._testInjectFault(rv, count);
  }
}
