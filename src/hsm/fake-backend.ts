// An in-memory HsmBackend built on node:crypto, FOR UNIT TESTS OF UPPER LAYERS ONLY.
//
// It is not an HSM: key material lives in this process's memory. Never use it to protect
// real keys. It behaves like a compliant PKCS#11 token where that matters to callers:
// keys are sensitive, non-extractable unless asked, usage flags are enforced, errors use
// the `CKR_*` names a token would return (a GCM tag failure is CKR_ENCRYPTED_DATA_INVALID,
// the spec's code; SoftHSM2 says CKR_GENERAL_ERROR), and the same conformance suite
// (test/hsm/conformance.ts) runs against it and against SoftHSM2.
//
// Test hooks beyond the contract: a bounded queue (`queueCapacity`) with `pause()` /
// `resume()` to fill it (HYOKD_QUEUE_FULL), `injectFault(code, count)` to make the next
// operations fail, `objectCount()`, and the usual `counters()`.

import {
  KeyObject,
  constants,
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  generateKeyPair as generateKeyPairCb,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  sign as nodeSign,
  verify as nodeVerify,
} from 'node:crypto';
import { promisify } from 'node:util';
import { HsmError, HyokdHsmCodes } from './errors.js';
import type {
  Capabilities,
  HsmBackend,
  HsmCounters,
  HsmState,
  ItemResult,
  KeyClass,
  KeyRef,
  KeyUsage,
  MechanismInfo,
  ModuleInfo,
  ObjectAttributes,
  ObjectSpec,
  OaepHash,
  Op,
  OpName,
  OpOf,
  OpValues,
  SubmitOptions,
  TokenInfo,
} from './types.js';

const generateKeyPairAsync = promisify(generateKeyPairCb);

// The CK_RV values of the codes the fake produces (PKCS#11 v2.40 / v3.0).
const RV: Record<string, number> = {
  CKR_GENERAL_ERROR: 0x5,
  CKR_ARGUMENTS_BAD: 0x7,
  CKR_ATTRIBUTE_VALUE_INVALID: 0x13,
  CKR_DATA_LEN_RANGE: 0x21,
  CKR_DEVICE_ERROR: 0x30,
  CKR_DEVICE_MEMORY: 0x31,
  CKR_DEVICE_REMOVED: 0x32,
  CKR_ENCRYPTED_DATA_INVALID: 0x40,
  CKR_ENCRYPTED_DATA_LEN_RANGE: 0x41,
  CKR_FUNCTION_NOT_SUPPORTED: 0x54,
  CKR_KEY_SIZE_RANGE: 0x62,
  CKR_KEY_TYPE_INCONSISTENT: 0x63,
  CKR_KEY_FUNCTION_NOT_PERMITTED: 0x68,
  CKR_KEY_UNEXTRACTABLE: 0x6a,
  CKR_MECHANISM_INVALID: 0x70,
  CKR_MECHANISM_PARAM_INVALID: 0x71,
  CKR_OBJECT_HANDLE_INVALID: 0x82,
  CKR_SESSION_CLOSED: 0xb0,
  CKR_SESSION_HANDLE_INVALID: 0xb3,
  CKR_TEMPLATE_INCONSISTENT: 0xd1,
  CKR_TOKEN_NOT_PRESENT: 0xe0,
  CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT: 0xf2,
  CKR_WRAPPED_KEY_INVALID: 0x110,
  CKR_WRAPPED_KEY_LEN_RANGE: 0x112,
  CKR_WRAPPING_KEY_TYPE_INCONSISTENT: 0x115,
};

/** Codes a real backend would treat as session/device-level, hence retriable. */
const RETRIABLE = new Set([
  'CKR_DEVICE_ERROR',
  'CKR_DEVICE_MEMORY',
  'CKR_DEVICE_REMOVED',
  'CKR_SESSION_CLOSED',
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_TOKEN_NOT_PRESENT',
  HyokdHsmCodes.UNAVAILABLE,
  HyokdHsmCodes.QUEUE_FULL,
]);

function fail(
  code: string,
  op: string | undefined,
  message: string,
  retriable = RETRIABLE.has(code),
): HsmError {
  return new HsmError({ code, rv: code.startsWith('CKR_') ? (RV[code] ?? -1) : -1, retriable, message, op });
}

const KW_IV = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');
const KWP_IV = Buffer.from('a65959a6', 'hex');
/** DER of the P-256 OID (1.2.840.10045.3.1.7), as CKA_EC_PARAMS holds it. */
const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');

interface FakeObject {
  handle: number;
  cls: KeyClass;
  keyType: 'aes' | 'rsa' | 'ec';
  id: Buffer;
  label: string;
  token: boolean;
  sensitive: boolean;
  extractable: boolean;
  alwaysSensitive: boolean;
  neverExtractable: boolean;
  local: boolean;
  usage: Required<KeyUsage>;
  secret?: Buffer;
  key?: KeyObject;
}

function fullUsage(u: KeyUsage): Required<KeyUsage> {
  return {
    encrypt: !!u.encrypt,
    decrypt: !!u.decrypt,
    wrap: !!u.wrap,
    unwrap: !!u.unwrap,
    sign: !!u.sign,
    verify: !!u.verify,
    derive: !!u.derive,
  };
}

// --- raw ECDSA on P-256 -------------------------------------------------------------------
// CKM_ECDSA signs a digest the caller computed; node:crypto always hashes its input, so the
// fake does the curve arithmetic itself (affine coordinates, BigInt; slow but exact).

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const A = P - 3n;
const G: Point = {
  x: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
  y: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
};
type Point = { x: bigint; y: bigint } | null;

const mod = (a: bigint, m: bigint): bigint => ((a % m) + m) % m;
function inv(a: bigint, m: bigint): bigint {
  let [r0, r1] = [mod(a, m), m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0, m);
}
function add(p1: Point, p2: Point): Point {
  if (!p1) return p2;
  if (!p2) return p1;
  if (p1.x === p2.x && mod(p1.y + p2.y, P) === 0n) return null;
  const l =
    p1.x === p2.x && p1.y === p2.y
      ? mod((3n * p1.x * p1.x + A) * inv(2n * p1.y, P), P)
      : mod((p2.y - p1.y) * inv(p2.x - p1.x, P), P);
  const x = mod(l * l - p1.x - p2.x, P);
  return { x, y: mod(l * (p1.x - x) - p1.y, P) };
}
function mul(k: bigint, pt: Point): Point {
  let r: Point = null;
  let q = pt;
  while (k > 0n) {
    if (k & 1n) r = add(r, q);
    q = add(q, q);
    k >>= 1n;
  }
  return r;
}
const toBig = (b: Buffer): bigint => (b.length === 0 ? 0n : BigInt('0x' + b.toString('hex')));
const toBuf32 = (v: bigint): Buffer => Buffer.from(v.toString(16).padStart(64, '0'), 'hex');
const digestInt = (d: Buffer): bigint => toBig(d.length > 32 ? d.subarray(0, 32) : d);

function ecdsaSign(priv: KeyObject, digest: Buffer): Buffer {
  const d = toBig(Buffer.from(priv.export({ format: 'jwk' }).d!, 'base64url'));
  const e = digestInt(digest);
  for (;;) {
    const k = mod(toBig(randomBytes(40)), N - 1n) + 1n;
    const r = mod(mul(k, G)!.x, N);
    if (r === 0n) continue;
    const s = mod(inv(k, N) * (e + r * d), N);
    if (s === 0n) continue;
    return Buffer.concat([toBuf32(r), toBuf32(s)]);
  }
}

function ecdsaVerify(pub: KeyObject, digest: Buffer, sig: Buffer): boolean {
  if (sig.length !== 64) return false;
  const jwk = pub.export({ format: 'jwk' });
  const q: Point = { x: toBig(Buffer.from(jwk.x!, 'base64url')), y: toBig(Buffer.from(jwk.y!, 'base64url')) };
  const r = toBig(sig.subarray(0, 32));
  const s = toBig(sig.subarray(32));
  if (r < 1n || r >= N || s < 1n || s >= N) return false;
  const w = inv(s, N);
  const x = add(mul(mod(digestInt(digest) * w, N), G), mul(mod(r * w, N), q));
  return x !== null && mod(x.x, N) === r;
}

// --- the backend --------------------------------------------------------------------------

export interface FakeBackendOptions {
  /** Items that may wait for a worker before submissions are refused (default 1024). */
  queueCapacity?: number;
  /** Operations in flight at once, like a session pool (default 4). */
  workers?: number;
  /** What `capabilities()` reports and the fake enforces (default: everything supported). */
  capabilities?: Partial<Capabilities>;
  /** Token label (default "hyokd-fake"). */
  tokenLabel?: string;
}

interface Job {
  op: Op;
  /** Epoch ms after which the job may no longer start (HYOKD_DEADLINE_EXCEEDED). */
  deadline: number | undefined;
  resolve: (v: unknown) => void;
  reject: (e: HsmError) => void;
}

interface Fault {
  code: string;
  remaining: number;
  op: OpName | undefined;
  retriable: boolean | undefined;
}

export class FakeHsmBackend implements HsmBackend {
  readonly module: ModuleInfo = {
    cryptokiVersion: '2.40',
    manufacturerId: 'hyokd',
    libraryDescription: 'hyokd in-memory fake (tests only)',
    libraryVersion: '1.0',
  };
  readonly token: TokenInfo;

  private readonly caps: Capabilities;
  private readonly capacity: number;
  private readonly workers: number;
  private readonly objects = new Map<number, FakeObject>();
  private readonly handleCache = new Map<string, number>();
  private nextHandle = 1;
  private readonly waiting: Job[] = [];
  private busy = 0;
  private paused = false;
  private currentState: HsmState = 'ready';
  private readonly faults: Fault[] = [];
  private readonly idle: (() => void)[] = [];
  private readonly stats = {
    ops: {} as Record<string, number>,
    errors: {} as Record<string, number>,
    handleResolves: 0,
    rejectedQueueFull: 0,
  };

  constructor(options: FakeBackendOptions = {}) {
    this.capacity = options.queueCapacity ?? 1024;
    this.workers = options.workers ?? 4;
    this.caps = {
      oaepSha1: true,
      oaepSha256: true,
      rsaAesKeyWrap: true,
      aesKeyWrapPad: true,
      sessionCopy: true,
      ...options.capabilities,
    };
    this.token = {
      slotId: 0,
      label: options.tokenLabel ?? 'hyokd-fake',
      manufacturerId: 'hyokd',
      model: 'fake',
      serialNumber: '0000000000000000',
      maxSessionCount: null,
      sessionCount: this.workers + 1,
      maxRwSessionCount: null,
      rwSessionCount: this.workers + 1,
      flags: { loginRequired: true, userPinInitialized: true, tokenInitialized: true, rng: true },
    };
  }

  // --- test hooks ---

  /** Make the next `count` operations (optionally only of one op kind) fail with `code`. */
  injectFault(code: string, count = 1, options: { op?: OpName; retriable?: boolean } = {}): void {
    this.faults.push({ code, remaining: count, op: options.op, retriable: options.retriable });
  }

  /** Stop workers from taking new jobs (submissions queue up until `resume()`). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.pump();
  }

  /** Objects currently on the fake token (token and session objects). */
  objectCount(): number {
    return this.objects.size;
  }

  // --- HsmBackend ---

  mechanisms(): MechanismInfo[] {
    const m = (
      name: string,
      type: number,
      min: number,
      max: number,
      f: Partial<MechanismInfo['flags']>,
    ): MechanismInfo => ({
      name,
      type,
      minKeySize: min,
      maxKeySize: max,
      flags: {
        encrypt: false,
        decrypt: false,
        digest: false,
        sign: false,
        verify: false,
        generate: false,
        generateKeyPair: false,
        wrap: false,
        unwrap: false,
        derive: false,
        ...f,
      },
    });
    const list = [
      m('CKM_RSA_PKCS_KEY_PAIR_GEN', 0x0, 2048, 4096, { generateKeyPair: true }),
      m('CKM_RSA_PKCS_OAEP', 0x9, 2048, 4096, { encrypt: true, decrypt: true, wrap: true, unwrap: true }),
      m('CKM_SHA256_RSA_PKCS_PSS', 0x43, 2048, 4096, { sign: true, verify: true }),
      m('CKM_SHA384_RSA_PKCS_PSS', 0x44, 2048, 4096, { sign: true, verify: true }),
      m('CKM_EC_KEY_PAIR_GEN', 0x1040, 256, 256, { generateKeyPair: true }),
      m('CKM_ECDSA', 0x1041, 256, 256, { sign: true, verify: true }),
      m('CKM_AES_KEY_GEN', 0x1080, 16, 32, { generate: true }),
      m('CKM_AES_GCM', 0x1087, 16, 32, { encrypt: true, decrypt: true }),
      m('CKM_AES_KEY_WRAP', 0x2109, 16, 32, { wrap: true, unwrap: true }),
    ];
    if (this.caps.rsaAesKeyWrap)
      list.push(m('CKM_RSA_AES_KEY_WRAP', 0x1054, 2048, 4096, { wrap: true, unwrap: true }));
    if (this.caps.aesKeyWrapPad)
      list.push(m('CKM_AES_KEY_WRAP_PAD', 0x210a, 16, 32, { wrap: true, unwrap: true }));
    return list;
  }

  async capabilities(): Promise<Capabilities> {
    return { ...this.caps };
  }

  run<N extends OpName>(op: OpOf<N>, opts?: SubmitOptions): Promise<OpValues[N]> {
    if (this.currentState === 'closed') {
      return Promise.reject(this.count(fail(HyokdHsmCodes.CLOSED, op.op, 'backend is closed', false)));
    }
    if (this.waiting.length + 1 > this.capacity) {
      this.stats.rejectedQueueFull++;
      return Promise.reject(
        this.count(fail(HyokdHsmCodes.QUEUE_FULL, op.op, 'submission queue is full', true)),
      );
    }
    return this.enqueue(op, opts) as Promise<OpValues[N]>;
  }

  async batch(ops: Op[], opts?: SubmitOptions): Promise<ItemResult[]> {
    if (this.currentState === 'closed')
      throw this.count(fail(HyokdHsmCodes.CLOSED, undefined, 'backend is closed', false));
    if (this.waiting.length + ops.length > this.capacity) {
      this.stats.rejectedQueueFull++;
      throw this.count(fail(HyokdHsmCodes.QUEUE_FULL, undefined, 'submission queue is full', true));
    }
    return Promise.all(
      ops.map((op) =>
        this.enqueue(op, opts).then(
          (v) => ({ ok: true, ...(v as object) }) as ItemResult,
          (error: HsmError) => ({ ok: false, error }) as ItemResult,
        ),
      ),
    );
  }

  async evictKey(ref: KeyRef): Promise<void> {
    this.handleCache.delete(this.cacheKey(ref));
  }

  counters(): HsmCounters {
    return {
      state: this.currentState,
      queueDepth: this.waiting.length,
      queueCapacity: this.capacity,
      sessionsTotal: this.workers,
      sessionsBusy: this.busy,
      sessionsIdle: this.workers - this.busy,
      ops: { ...this.stats.ops },
      errors: { ...this.stats.errors },
      reinitializations: 0,
      sessionReopens: 0,
      relogins: 0,
      handleResolves: this.stats.handleResolves,
      sessionCopiesDropped: 0,
      rejectedQueueFull: this.stats.rejectedQueueFull,
    };
  }

  state(): HsmState {
    return this.currentState;
  }

  async close(): Promise<void> {
    if (this.currentState === 'closed') return;
    this.currentState = 'closed';
    this.paused = false;
    this.pump();
    if (this.busy > 0 || this.waiting.length > 0) await new Promise<void>((r) => this.idle.push(r));
    for (const o of this.objects.values()) o.secret?.fill(0);
    this.objects.clear();
    this.handleCache.clear();
  }

  // --- scheduling ---

  private count(e: HsmError): HsmError {
    this.stats.errors[e.code] = (this.stats.errors[e.code] ?? 0) + 1;
    return e;
  }

  private enqueue(op: Op, opts?: SubmitOptions): Promise<unknown> {
    const deadline = opts?.timeoutMs === undefined ? undefined : Date.now() + opts.timeoutMs;
    return new Promise((resolve, reject) => {
      this.waiting.push({ op, deadline, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (!this.paused && this.busy < this.workers && this.waiting.length > 0) {
      const job = this.waiting.shift()!;
      this.busy++;
      // Run on a later turn, as a real backend completes on another thread.
      setImmediate(() => {
        const started =
          job.deadline !== undefined && Date.now() > job.deadline
            ? Promise.reject(
                fail(
                  'HYOKD_DEADLINE_EXCEEDED',
                  job.op.op,
                  'the deadline passed before the HSM step started',
                  false,
                ),
              )
            : this.execute(job.op);
        started
          .then(
            (v) => {
              this.stats.ops[job.op.op] = (this.stats.ops[job.op.op] ?? 0) + 1;
              job.resolve(v);
            },
            (e: unknown) => {
              const err =
                e instanceof HsmError
                  ? e
                  : fail('CKR_GENERAL_ERROR', job.op.op, 'fake backend: ' + String(e), false);
              job.reject(this.count(err));
            },
          )
          .finally(() => {
            this.busy--;
            if (this.busy === 0 && this.waiting.length === 0) for (const r of this.idle.splice(0)) r();
            this.pump();
          });
      });
    }
  }

  private takeFault(op: OpName): Fault | undefined {
    const i = this.faults.findIndex((f) => f.op === undefined || f.op === op);
    if (i < 0) return undefined;
    const f = this.faults[i]!;
    if (--f.remaining <= 0) this.faults.splice(i, 1);
    return f;
  }

  // --- objects ---

  private cacheKey(ref: KeyRef): string {
    return (ref.token === false ? 'S:' : 'T:') + ref.cls + ':' + ref.id.toString('hex');
  }

  private resolve(ref: KeyRef, op: string): FakeObject {
    const k = this.cacheKey(ref);
    const cached = this.handleCache.get(k);
    if (cached !== undefined) {
      const o = this.objects.get(cached);
      if (o && this.matches(o, ref)) return o;
      this.handleCache.delete(k); // stale: re-resolve once
    }
    this.stats.handleResolves++;
    const hits = [...this.objects.values()].filter((o) => this.matches(o, ref));
    if (hits.length === 0)
      throw fail(HyokdHsmCodes.KEY_NOT_FOUND, op, 'no key with this id and class on the token');
    if (hits.length > 1) throw fail('HYOKD_KEY_AMBIGUOUS', op, 'more than one key has that id and class');
    const found = hits[0]!;
    this.handleCache.set(k, found.handle);
    return found;
  }

  /** Like the native resolver: class, id, and CKA_TOKEN (a KeyRef means a token object unless `token: false`). */
  private matches(o: FakeObject, ref: KeyRef): boolean {
    return o.cls === ref.cls && o.token === (ref.token ?? true) && o.id.equals(ref.id);
  }

  private byHandle(handle: number, op: string): FakeObject {
    const o = this.objects.get(handle);
    if (!o) throw fail('CKR_OBJECT_HANDLE_INVALID', op, 'no object with this handle');
    return o;
  }

  private add(
    spec: ObjectSpec,
    fields: Omit<FakeObject, 'handle' | 'id' | 'label' | 'token' | 'usage'>,
  ): FakeObject {
    if (!Buffer.isBuffer(spec.id) || typeof spec.label !== 'string') {
      throw fail('CKR_ATTRIBUTE_VALUE_INVALID', undefined, 'spec needs an id Buffer and a label');
    }
    const o: FakeObject = {
      handle: this.nextHandle++,
      id: Buffer.from(spec.id),
      label: spec.label,
      token: spec.token ?? true,
      usage: fullUsage(spec.usage ?? {}),
      ...fields,
    };
    this.objects.set(o.handle, o);
    return o;
  }

  private secretSpec(
    spec: ObjectSpec,
    local: boolean,
  ): Omit<FakeObject, 'handle' | 'id' | 'label' | 'token' | 'usage' | 'cls' | 'keyType'> {
    const extractable = spec.extractable ?? false;
    return {
      sensitive: true,
      extractable,
      alwaysSensitive: local,
      neverExtractable: local && !extractable,
      local,
    };
  }

  private need(
    o: FakeObject,
    op: string,
    cls: KeyClass,
    keyType: FakeObject['keyType'],
    use: keyof KeyUsage,
    wrongType = 'CKR_KEY_TYPE_INCONSISTENT',
  ): void {
    if (o.cls !== cls || o.keyType !== keyType) throw fail(wrongType, op, `needs a ${keyType} ${cls} key`);
    if (!o.usage[use]) throw fail('CKR_KEY_FUNCTION_NOT_PERMITTED', op, `key does not allow ${use}`);
  }

  private oaep(hash: OaepHash | undefined, op: string): OaepHash {
    const h = hash ?? 'sha1';
    if (h !== 'sha1' && h !== 'sha256') throw fail('CKR_MECHANISM_PARAM_INVALID', op, 'unknown OAEP hash');
    if ((h === 'sha1' && !this.caps.oaepSha1) || (h === 'sha256' && !this.caps.oaepSha256)) {
      throw fail('CKR_ARGUMENTS_BAD', op, `OAEP ${h} not supported`);
    }
    return h;
  }

  private attributes(o: FakeObject): ObjectAttributes {
    const a: ObjectAttributes = {
      handle: o.handle,
      cls: o.cls,
      keyType: o.keyType,
      id: Buffer.from(o.id),
      label: o.label,
      token: o.token,
      sensitive: o.sensitive,
      extractable: o.extractable,
      alwaysSensitive: o.alwaysSensitive,
      neverExtractable: o.neverExtractable,
      local: o.local,
      usage: { ...o.usage },
    };
    if (o.secret) a.valueLen = o.secret.length;
    if (o.key && o.keyType === 'rsa') {
      const jwk = o.key.export({ format: 'jwk' });
      a.modulus = Buffer.from(jwk.n!, 'base64url');
      a.publicExponent = Buffer.from(jwk.e!, 'base64url');
    }
    if (o.key && o.keyType === 'ec') {
      a.ecParams = Buffer.from(P256_PARAMS);
      if (o.cls === 'public') {
        const jwk = o.key.export({ format: 'jwk' });
        const x = Buffer.from(jwk.x!, 'base64url');
        const y = Buffer.from(jwk.y!, 'base64url');
        a.ecPoint = Buffer.concat([Buffer.from([0x04, 0x41, 0x04]), x, y]);
      }
    }
    return a;
  }

  /** Key material as a wrap mechanism sees it: raw AES bytes, or PKCS#8 DER of a private key. */
  private material(o: FakeObject, op: string): Buffer {
    if (o.cls === 'public') throw fail('CKR_KEY_TYPE_INCONSISTENT', op, 'public keys are not wrapped');
    if (!o.extractable) throw fail('CKR_KEY_UNEXTRACTABLE', op, 'key is not extractable');
    if (o.secret) return Buffer.from(o.secret);
    return o.key!.export({ format: 'der', type: 'pkcs8' });
  }

  private importMaterial(
    material: Buffer,
    keyType: 'aes' | 'rsa' | 'ec',
    spec: ObjectSpec,
    op: string,
  ): FakeObject {
    const base = this.secretSpec(spec, false);
    if (keyType === 'aes') {
      if (![16, 24, 32].includes(material.length))
        throw fail('CKR_WRAPPED_KEY_INVALID', op, 'unwrapped AES key has a bad length');
      return this.add(spec, { ...base, cls: 'secret', keyType: 'aes', secret: material });
    }
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: material, format: 'der', type: 'pkcs8' });
    } catch {
      throw fail('CKR_WRAPPED_KEY_INVALID', op, 'unwrapped bytes are not a PKCS#8 private key');
    }
    if (
      key.asymmetricKeyType !== keyType ||
      (keyType === 'ec' && key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    ) {
      throw fail('CKR_WRAPPED_KEY_INVALID', op, 'unwrapped key is not of the declared type');
    }
    return this.add(spec, { ...base, cls: 'private', keyType, key });
  }

  private async execute(op: Op): Promise<unknown> {
    const name = op.op;
    const f = this.takeFault(name);
    if (f) throw fail(f.code, name, `injected fault ${f.code}`, f.retriable ?? RETRIABLE.has(f.code));
    switch (op.op) {
      case 'random': {
        if (!Number.isInteger(op.length) || op.length < 0 || op.length > 1 << 20) {
          throw fail('CKR_ARGUMENTS_BAD', name, 'random length out of range');
        }
        return { bytes: randomBytes(op.length) };
      }
      case 'generateKey': {
        if (![128, 192, 256].includes(op.keyBits))
          throw fail('CKR_ATTRIBUTE_VALUE_INVALID', name, 'AES key size');
        const o = this.add(op.spec, {
          ...this.secretSpec(op.spec, true),
          cls: 'secret',
          keyType: 'aes',
          secret: randomBytes(op.keyBits / 8),
        });
        return { handle: o.handle };
      }
      case 'generateKeyPair': {
        let pair: { publicKey: KeyObject; privateKey: KeyObject };
        if (op.kind === 'rsa') {
          const bits = op.modulusBits ?? 3072;
          if (!Number.isInteger(bits) || bits < 1024 || bits > 8192 || bits % 8 !== 0) {
            throw fail('CKR_ATTRIBUTE_VALUE_INVALID', name, 'RSA modulus size');
          }
          pair = await generateKeyPairAsync('rsa', { modulusLength: bits, publicExponent: 65537 });
        } else if (op.kind === 'ec') {
          if ((op.curve ?? 'P-256') !== 'P-256') throw fail('CKR_ATTRIBUTE_VALUE_INVALID', name, 'curve');
          pair = await generateKeyPairAsync('ec', { namedCurve: 'prime256v1' });
        } else {
          throw fail('CKR_MECHANISM_INVALID', name, 'unknown key pair kind');
        }
        const pub = this.add(op.publicSpec, {
          cls: 'public',
          keyType: op.kind,
          key: pair.publicKey,
          sensitive: false,
          extractable: true,
          alwaysSensitive: false,
          neverExtractable: false,
          local: true,
        });
        const priv = this.add(op.privateSpec, {
          ...this.secretSpec(op.privateSpec, true),
          cls: 'private',
          keyType: op.kind,
          key: pair.privateKey,
        });
        return { publicHandle: pub.handle, privateHandle: priv.handle };
      }
      case 'encrypt': {
        const o = this.resolve(op.key, name);
        this.need(o, name, 'secret', 'aes', 'encrypt');
        const iv = op.iv ?? randomBytes(12);
        if (iv.length !== 12) throw fail('CKR_MECHANISM_PARAM_INVALID', name, 'GCM IV must be 12 bytes');
        const c = createCipheriv(`aes-${o.secret!.length * 8}-gcm` as 'aes-256-gcm', o.secret!, iv);
        if (op.aad) c.setAAD(op.aad);
        const ciphertext = Buffer.concat([c.update(op.plaintext), c.final(), c.getAuthTag()]);
        return { iv: Buffer.from(iv), ciphertext };
      }
      case 'decrypt': {
        const o = this.resolve(op.key, name);
        this.need(o, name, 'secret', 'aes', 'decrypt');
        if (op.iv.length !== 12) throw fail('CKR_MECHANISM_PARAM_INVALID', name, 'GCM IV must be 12 bytes');
        if (op.ciphertext.length < 16)
          throw fail('CKR_ENCRYPTED_DATA_LEN_RANGE', name, 'shorter than the GCM tag');
        const d = createDecipheriv(`aes-${o.secret!.length * 8}-gcm` as 'aes-256-gcm', o.secret!, op.iv);
        if (op.aad) d.setAAD(op.aad);
        d.setAuthTag(op.ciphertext.subarray(op.ciphertext.length - 16));
        try {
          return {
            plaintext: Buffer.concat([
              d.update(op.ciphertext.subarray(0, op.ciphertext.length - 16)),
              d.final(),
            ]),
          };
        } catch {
          throw fail('CKR_ENCRYPTED_DATA_INVALID', name, 'GCM tag check failed');
        }
      }
      case 'rsaEncrypt': {
        const o = this.resolve(op.key, name);
        this.need(o, name, 'public', 'rsa', 'encrypt');
        const hash = this.oaep(op.hash, name);
        try {
          return {
            data: publicEncrypt(
              { key: o.key!, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash },
              op.data,
            ),
          };
        } catch {
          throw fail('CKR_DATA_LEN_RANGE', name, 'data too long for OAEP');
        }
      }
      case 'rsaDecrypt': {
        const o = this.resolve(op.key, name);
        this.need(o, name, 'private', 'rsa', 'decrypt');
        const hash = this.oaep(op.hash, name);
        try {
          return {
            data: privateDecrypt(
              { key: o.key!, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash },
              op.data,
            ),
          };
        } catch {
          throw fail('CKR_ENCRYPTED_DATA_INVALID', name, 'OAEP decoding failed');
        }
      }
      case 'wrapKey': {
        const w = this.resolve(op.wrappingKey, name);
        const k = this.resolve(op.key, name);
        if (op.mechanism === 'AES_KEY_WRAP' || op.mechanism === 'AES_KEY_WRAP_PAD') {
          this.need(w, name, 'secret', 'aes', 'wrap', 'CKR_WRAPPING_KEY_TYPE_INCONSISTENT');
          if (op.mechanism === 'AES_KEY_WRAP_PAD' && !this.caps.aesKeyWrapPad)
            throw fail('CKR_MECHANISM_INVALID', name, 'KWP not supported');
          const data = this.material(k, name);
          const pad = op.mechanism === 'AES_KEY_WRAP_PAD';
          if (!pad && (data.length % 8 !== 0 || data.length < 16))
            throw fail('CKR_KEY_SIZE_RANGE', name, 'KW needs a multiple of 8 bytes');
          const bits = w.secret!.length * 8;
          const c = createCipheriv(`id-aes${bits}-wrap${pad ? '-pad' : ''}`, w.secret!, pad ? KWP_IV : KW_IV);
          return { wrapped: Buffer.concat([c.update(data), c.final()]) };
        }
        if (op.mechanism === 'RSA_PKCS_OAEP') {
          this.need(w, name, 'public', 'rsa', 'wrap', 'CKR_WRAPPING_KEY_TYPE_INCONSISTENT');
          const hash = this.oaep(op.hash, name);
          if (k.cls !== 'secret')
            throw fail('CKR_KEY_TYPE_INCONSISTENT', name, 'RSA-OAEP wraps secret keys only');
          const data = this.material(k, name);
          return {
            wrapped: publicEncrypt(
              { key: w.key!, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash },
              data,
            ),
          };
        }
        throw fail('CKR_MECHANISM_INVALID', name, 'unknown wrap mechanism');
      }
      case 'unwrapKey': {
        const u = this.resolve(op.unwrappingKey, name);
        let material: Buffer;
        if (op.mechanism === 'AES_KEY_WRAP' || op.mechanism === 'AES_KEY_WRAP_PAD') {
          this.need(u, name, 'secret', 'aes', 'unwrap', 'CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT');
          const pad = op.mechanism === 'AES_KEY_WRAP_PAD';
          if (pad && !this.caps.aesKeyWrapPad) throw fail('CKR_MECHANISM_INVALID', name, 'KWP not supported');
          if (op.wrapped.length % 8 !== 0 || op.wrapped.length < 16)
            throw fail('CKR_WRAPPED_KEY_LEN_RANGE', name, 'wrapped length');
          const bits = u.secret!.length * 8;
          const d = createDecipheriv(
            `id-aes${bits}-wrap${pad ? '-pad' : ''}`,
            u.secret!,
            pad ? KWP_IV : KW_IV,
          );
          try {
            material = Buffer.concat([d.update(op.wrapped), d.final()]);
          } catch {
            throw fail('CKR_WRAPPED_KEY_INVALID', name, 'key wrap integrity check failed');
          }
        } else if (op.mechanism === 'RSA_PKCS_OAEP') {
          this.need(u, name, 'private', 'rsa', 'unwrap', 'CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT');
          const hash = this.oaep(op.hash, name);
          try {
            material = privateDecrypt(
              { key: u.key!, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash },
              op.wrapped,
            );
          } catch {
            throw fail('CKR_WRAPPED_KEY_INVALID', name, 'OAEP decoding failed');
          }
        } else if (op.mechanism === 'RSA_AES_KEY_WRAP') {
          this.need(u, name, 'private', 'rsa', 'unwrap', 'CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT');
          if (!this.caps.rsaAesKeyWrap)
            throw fail('CKR_MECHANISM_INVALID', name, 'RSA AES key wrap not supported');
          const hash = this.oaep(op.hash, name);
          const aesBits = op.aesKeyBits ?? 256;
          if (![128, 192, 256].includes(aesBits))
            throw fail('CKR_MECHANISM_PARAM_INVALID', name, 'AES key size');
          const modBytes = (u.key!.asymmetricKeyDetails?.modulusLength ?? 0) / 8;
          if (op.wrapped.length <= modBytes) throw fail('CKR_WRAPPED_KEY_LEN_RANGE', name, 'wrapped length');
          let eph: Buffer;
          try {
            eph = privateDecrypt(
              { key: u.key!, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash },
              op.wrapped.subarray(0, modBytes),
            );
          } catch {
            throw fail('CKR_WRAPPED_KEY_INVALID', name, 'OAEP decoding failed');
          }
          if (eph.length !== aesBits / 8) throw fail('CKR_WRAPPED_KEY_INVALID', name, 'ephemeral key size');
          try {
            const d = createDecipheriv(`id-aes${aesBits}-wrap-pad`, eph, KWP_IV);
            material = Buffer.concat([d.update(op.wrapped.subarray(modBytes)), d.final()]);
          } catch {
            throw fail('CKR_WRAPPED_KEY_INVALID', name, 'key wrap integrity check failed');
          } finally {
            eph.fill(0);
          }
        } else {
          throw fail('CKR_MECHANISM_INVALID', name, 'unknown unwrap mechanism');
        }
        return { handle: this.importMaterial(material, op.keyType, op.spec, name).handle };
      }
      case 'sign': {
        const o = this.resolve(op.key, name);
        if (op.mechanism === 'ECDSA') {
          this.need(o, name, 'private', 'ec', 'sign');
          if (op.data.length === 0) throw fail('CKR_DATA_LEN_RANGE', name, 'empty digest');
          return { signature: ecdsaSign(o.key!, op.data) };
        }
        this.need(o, name, 'private', 'rsa', 'sign');
        const [hash, saltLength] = this.pss(op.mechanism, name);
        return {
          signature: nodeSign(hash, op.data, {
            key: o.key!,
            padding: constants.RSA_PKCS1_PSS_PADDING,
            saltLength,
          }),
        };
      }
      case 'verify': {
        const o = this.resolve(op.key, name);
        if (op.mechanism === 'ECDSA') {
          this.need(o, name, 'public', 'ec', 'verify');
          return { valid: ecdsaVerify(o.key!, op.data, op.signature) };
        }
        this.need(o, name, 'public', 'rsa', 'verify');
        const [hash, saltLength] = this.pss(op.mechanism, name);
        return {
          valid: nodeVerify(
            hash,
            op.data,
            { key: o.key!, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength },
            op.signature,
          ),
        };
      }
      case 'find': {
        const handles: number[] = [];
        for (const o of this.objects.values()) {
          if (op.cls !== undefined && o.cls !== op.cls) continue;
          if (op.id !== undefined && !o.id.equals(op.id)) continue;
          if (op.label !== undefined && o.label !== op.label) continue;
          handles.push(o.handle);
        }
        return { handles };
      }
      case 'getAttributes':
        return { attrs: this.attributes(this.byHandle(op.handle, name)) };
      case 'setAttributes': {
        const o = this.byHandle(op.handle, name);
        if (op.attrs.label !== undefined) o.label = op.attrs.label;
        if (op.attrs.id !== undefined) o.id = Buffer.from(op.attrs.id);
        if (op.attrs.usage !== undefined)
          o.usage = { ...o.usage, ...fullUsage({ ...o.usage, ...op.attrs.usage }) };
        for (const [k, h] of this.handleCache) if (h === o.handle) this.handleCache.delete(k);
        return {};
      }
      case 'copyObject': {
        const o = this.byHandle(op.handle, name);
        if (!this.caps.sessionCopy) throw fail('CKR_FUNCTION_NOT_SUPPORTED', name, 'copy not supported');
        const copy: FakeObject = {
          ...o,
          handle: this.nextHandle++,
          id: Buffer.from(o.id),
          label: op.label ?? o.label,
          token: op.token,
          usage: { ...o.usage },
          ...(o.secret ? { secret: Buffer.from(o.secret) } : {}),
        };
        this.objects.set(copy.handle, copy);
        return { handle: copy.handle };
      }
      case 'destroy': {
        const o = this.byHandle(op.handle, name);
        o.secret?.fill(0);
        this.objects.delete(o.handle);
        return {};
      }
      default:
        throw fail(HyokdHsmCodes.UNSUPPORTED, (op as { op: string }).op, 'unknown op');
    }
  }

  private pss(mechanism: string, op: string): ['sha256' | 'sha384', number] {
    if (mechanism === 'SHA256_RSA_PKCS_PSS') return ['sha256', 32];
    if (mechanism === 'SHA384_RSA_PKCS_PSS') return ['sha384', 48];
    throw fail('CKR_MECHANISM_INVALID', op, 'unknown sign mechanism');
  }
}

/** Convenience for tests: a fresh fake backend. */
export async function createFakeBackend(options?: FakeBackendOptions): Promise<FakeHsmBackend> {
  return new FakeHsmBackend(options);
}
