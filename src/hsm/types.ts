// The contract between hyokd's policy layers and an HSM.
//
// Everything above src/hsm/ talks to an `HsmBackend`; the production backend is the
// native PKCS#11 addon (src/hsm/native-backend.ts), and unit tests of upper layers may
// use the in-memory fake (src/hsm/fake-backend.ts). One conformance suite
// (test/hsm/conformance.ts) runs against both, so the fake cannot drift from the real
// thing.
//
// Operations are coarse: one `Op` is one complete HSM operation (`*Init` and the call
// together). A batch of ops crosses into native code once and comes back once, with a
// result per item.

/** The PKCS#11 object class of a key reference. */
export type KeyClass = 'secret' | 'private' | 'public';

/**
 * A key as hyokd names it on the token: its `CKA_ID` and object class. Backends resolve
 * it to a handle once and cache the handle; a stale handle is re-resolved once.
 */
export interface KeyRef {
  id: Buffer;
  cls: KeyClass;
  /** false: a session object (probes, ephemeral keys). Default true: a token object. */
  token?: boolean;
}

/** Usage attributes for generated or unwrapped keys (`CKA_ENCRYPT`, `CKA_DECRYPT`, …). */
export interface KeyUsage {
  encrypt?: boolean;
  decrypt?: boolean;
  wrap?: boolean;
  unwrap?: boolean;
  sign?: boolean;
  verify?: boolean;
  derive?: boolean;
}

/** Attributes common to created objects. Keys are always sensitive; extractable defaults to false. */
export interface ObjectSpec {
  id: Buffer;
  label: string;
  /** true: a token (persistent) object; false: a session object. Default true. */
  token?: boolean;
  /** Default false. Only backup keys and key-exchange wrapping flows ever set true. */
  extractable?: boolean;
  usage: KeyUsage;
}

export type WrapMechanism = 'AES_KEY_WRAP' | 'AES_KEY_WRAP_PAD' | 'RSA_PKCS_OAEP';
export type UnwrapMechanism = WrapMechanism | 'RSA_AES_KEY_WRAP';
export type OaepHash = 'sha1' | 'sha256';
/** `ECDSA` signs a caller-computed digest; the PSS variants hash inside the HSM. */
export type SignMechanism = 'ECDSA' | 'SHA256_RSA_PKCS_PSS' | 'SHA384_RSA_PKCS_PSS';

export type Op =
  | { op: 'random'; length: number }
  | { op: 'generateKey'; keyBits: 128 | 192 | 256; spec: ObjectSpec }
  | {
      op: 'generateKeyPair';
      kind: 'rsa' | 'ec';
      /** RSA modulus bits (default 3072). */
      modulusBits?: number;
      /** EC curve (only P-256 today). */
      curve?: 'P-256';
      publicSpec: ObjectSpec;
      privateSpec: ObjectSpec;
    }
  /** AES-256-GCM, 128-bit tag. Without `iv` the backend draws 12 bytes from the HSM RNG. */
  | { op: 'encrypt'; key: KeyRef; plaintext: Buffer; aad?: Buffer; iv?: Buffer }
  /** `ciphertext` is the GCM output: ciphertext followed by the 16-byte tag. */
  | { op: 'decrypt'; key: KeyRef; iv: Buffer; ciphertext: Buffer; aad?: Buffer }
  | { op: 'rsaEncrypt'; key: KeyRef; hash: OaepHash; data: Buffer }
  | { op: 'rsaDecrypt'; key: KeyRef; hash: OaepHash; data: Buffer }
  | { op: 'wrapKey'; mechanism: WrapMechanism; wrappingKey: KeyRef; key: KeyRef; hash?: OaepHash }
  | {
      op: 'unwrapKey';
      mechanism: UnwrapMechanism;
      unwrappingKey: KeyRef;
      wrapped: Buffer;
      /** For RSA_AES_KEY_WRAP: the size of the ephemeral AES key (default 256). */
      aesKeyBits?: number;
      hash?: OaepHash;
      keyType: 'aes' | 'rsa' | 'ec';
      spec: ObjectSpec;
    }
  | { op: 'sign'; key: KeyRef; mechanism: SignMechanism; data: Buffer }
  | { op: 'verify'; key: KeyRef; mechanism: SignMechanism; data: Buffer; signature: Buffer }
  | { op: 'find'; cls?: KeyClass; id?: Buffer; label?: string }
  | { op: 'getAttributes'; handle: number }
  | { op: 'setAttributes'; handle: number; attrs: SettableAttributes }
  /** A session copy of a key: still sensitive, never extractable. */
  | { op: 'copyObject'; handle: number; token: boolean; label?: string }
  | { op: 'destroy'; handle: number };

export interface SettableAttributes {
  label?: string;
  id?: Buffer;
  usage?: KeyUsage;
}

/** What `getAttributes` reports. Secret values are never read. */
export interface ObjectAttributes {
  handle: number;
  cls: KeyClass | 'other';
  keyType: 'aes' | 'rsa' | 'ec' | 'generic' | 'other';
  id: Buffer;
  label: string;
  token: boolean;
  sensitive: boolean;
  extractable: boolean;
  alwaysSensitive: boolean;
  neverExtractable: boolean;
  local: boolean;
  usage: Required<KeyUsage>;
  /** AES key length in bytes. */
  valueLen?: number;
  /** RSA public parts, EC point (DER of the uncompressed point) and params (DER OID). */
  modulus?: Buffer;
  publicExponent?: Buffer;
  ecPoint?: Buffer;
  ecParams?: Buffer;
}

/** The value an op yields, keyed by op name. */
export interface OpValues {
  random: { bytes: Buffer };
  generateKey: { handle: number };
  generateKeyPair: { publicHandle: number; privateHandle: number };
  encrypt: { iv: Buffer; ciphertext: Buffer };
  decrypt: { plaintext: Buffer };
  rsaEncrypt: { data: Buffer };
  rsaDecrypt: { data: Buffer };
  wrapKey: { wrapped: Buffer };
  unwrapKey: { handle: number };
  sign: { signature: Buffer };
  verify: { valid: boolean };
  find: { handles: number[] };
  getAttributes: { attrs: ObjectAttributes };
  setAttributes: Record<string, never>;
  copyObject: { handle: number };
  destroy: Record<string, never>;
}

export type OpName = Op['op'];
export type OpOf<N extends OpName> = Extract<Op, { op: N }>;

export type ItemResult<N extends OpName = OpName> =
  ({ ok: true } & OpValues[N]) | { ok: false; error: import('./errors.js').HsmError };

export interface ModuleInfo {
  cryptokiVersion: string;
  manufacturerId: string;
  libraryDescription: string;
  libraryVersion: string;
}

export interface TokenInfo {
  slotId: number;
  label: string;
  manufacturerId: string;
  model: string;
  serialNumber: string;
  maxSessionCount: number | null;
  sessionCount: number | null;
  maxRwSessionCount: number | null;
  rwSessionCount: number | null;
  flags: { loginRequired: boolean; userPinInitialized: boolean; tokenInitialized: boolean; rng: boolean };
}

export interface MechanismInfo {
  name: string;
  type: number;
  minKeySize: number;
  maxKeySize: number;
  flags: {
    encrypt: boolean;
    decrypt: boolean;
    digest: boolean;
    sign: boolean;
    verify: boolean;
    generate: boolean;
    generateKeyPair: boolean;
    wrap: boolean;
    unwrap: boolean;
    derive: boolean;
  };
}

/** Probed, not guessed: each flag comes from trying the mechanism on the token. */
export interface Capabilities {
  oaepSha1: boolean;
  oaepSha256: boolean;
  rsaAesKeyWrap: boolean;
  aesKeyWrapPad: boolean;
  /** Whether `C_CopyObject` makes a session copy of a token AES key. */
  sessionCopy: boolean;
}

export type HsmState = 'ready' | 'recovering' | 'closed';

export interface HsmCounters {
  state: HsmState;
  queueDepth: number;
  queueCapacity: number;
  sessionsTotal: number;
  sessionsBusy: number;
  sessionsIdle: number;
  /** Operations completed, by op name. */
  ops: Record<string, number>;
  /** Errors, by `CKR_*` / `HYOKD_*` code. */
  errors: Record<string, number>;
  reinitializations: number;
  sessionReopens: number;
  relogins: number;
  handleResolves: number;
  /** Session-object copies dropped because their token object vanished or changed behind hyokd. */
  sessionCopiesDropped: number;
  rejectedQueueFull: number;
}

export interface SubmitOptions {
  /** Items not started within this many milliseconds fail with HYOKD_DEADLINE_EXCEEDED. */
  timeoutMs?: number;
}

export interface HsmBackend {
  readonly module: ModuleInfo;
  readonly token: TokenInfo;
  mechanisms(): MechanismInfo[];
  capabilities(): Promise<Capabilities>;
  /** One op; rejects with `HsmError`. */
  run<N extends OpName>(op: OpOf<N>, opts?: SubmitOptions): Promise<OpValues[N]>;
  /** Many ops in one crossing; one result per item, in order. Rejects only when the whole batch is refused (queue full, closed). */
  batch(ops: Op[], opts?: SubmitOptions): Promise<ItemResult[]>;
  /** Drop a key's cached handles and destroy its session copies (on disable, delete, rotate-out). */
  evictKey(ref: KeyRef): Promise<void>;
  counters(): HsmCounters;
  state(): HsmState;
  /** Drain in-flight work, close sessions, log out, finalize. Idempotent. */
  close(): Promise<void>;
}
