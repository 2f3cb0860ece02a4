// Loads the compiled addon (build/Release/hyokd_native.node) and types its raw surface.
// src/hsm/ imports this file for the HSM (everything else uses `HsmBackend`), and the
// audit writer for its write helper thread (src/audit/write-offload.ts).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface RawErrorItem {
  ok: false;
  code: string;
  rv: number;
  retriable: boolean;
  message: string;
  op?: string;
}

export interface RawHsm {
  /**
   * One result per op, in order: an object, or for a successful decrypt the length of its
   * plaintext, the plaintexts lying side by side in `bytes` (addon.cc ResultsToJs).
   */
  submit(
    ops: unknown[],
    timeoutMs?: number,
  ): Promise<Array<(Record<string, unknown> & { ok: boolean }) | number> & { bytes?: ArrayBuffer }>;
  evictKey(ref: unknown): void;
  counters(): Record<string, unknown>;
  info(): { module: Record<string, unknown>; token: Record<string, unknown> };
  mechanisms(): Array<Record<string, unknown>>;
  close(): Promise<void>;
  _testCloseAllSessions(): number | undefined;
  _testInjectFault(rv: number, count: number): void;
}

export interface RawOpenOptions {
  /** Path of the PKCS#11 module (for SoftHSM2: /usr/lib/softhsm/libsofthsm2.so). */
  modulePath: string;
  tokenLabel?: string;
  tokenSerial?: string;
  /** The user PIN. The addon copies it into locked memory and zeroes this Buffer. */
  pin: Buffer;
  /** Worker sessions (one native thread each). Default: from the core count and the token's limit. */
  sessions?: number;
  /** Items that may wait for a session; beyond it submissions fail with HYOKD_QUEUE_FULL. */
  queueCapacity?: number;
  /** Use session-object copies of hot AES keys (faster on SoftHSM2; see README). */
  sessionObjectCopies?: boolean;
  /**
   * With copies: how often, in milliseconds, a copy's token object is checked (still there,
   * same id, class and usage flags) before the copy is used again; a copy that fails is
   * dropped. 1–3,600,000; default 1000.
   */
  sessionCopyRecheckMs?: number;
}

export interface RawAddon {
  open(options: RawOpenOptions): Promise<RawHsm>;
  initToken(options: {
    modulePath: string;
    label: string;
    soPin: Buffer;
    userPin: Buffer;
  }): Promise<{ slotId: number; serialNumber: string }>;
  rvName(rv: number): string;
  rvValue(name: string): number | undefined;
  /** The audit write helper thread (native/audit_write.cc). */
  AuditWriteThread: new (onAnswers: (flat: Array<number | string>) => void) => RawAuditWriteThread;
}

/** native/audit_write.cc; every answer is five entries of `onAnswers`' array: id, kind, text, bytes, position. */
export interface RawAuditWriteThread {
  /** `prev` null: right after the previous job's batch. `limit` -1: none. */
  write(
    id: number,
    fd: number,
    packed: string,
    seq: number,
    ts: string,
    prev: string | null,
    position: number,
    limit: number,
  ): void;
  cancel(): void;
  /** Hands the answers ready now to onAnswers at once; true if there were any. */
  poll(): boolean;
  close(): void;
  /** Test hook, a hung disk: while on, the next write waits just before it reaches the file. */
  _testHold(on: boolean): void;
  /** Whether a job waits at the test hold now. */
  _testHolding(): boolean;
}

/** The `kind` of an answer from RawAuditWriteThread. */
export const AUDIT_ANSWER = { written: 0, over: 1, error: 2, cancelled: 3, dead: 4 } as const;

function findAddon(): string {
  // dist/src/hsm/ (compiled) and src/hsm/ (run by tap through tsx) both reach the
  // package root by walking up to the folder that holds binding.gyp.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    // HYOKD_NATIVE_BUILD=Debug selects a sanitizer/debug build (scripts/asan-test.sh).
    const flavour = process.env.HYOKD_NATIVE_BUILD === 'Debug' ? 'Debug' : 'Release';
    const candidate = join(dir, 'build', flavour, 'hyokd_native.node');
    if (existsSync(join(dir, 'binding.gyp'))) return candidate;
    dir = dirname(dir);
  }
  throw new Error('cannot find the hyokd package root (binding.gyp)');
}

let cached: RawAddon | undefined;

export function addon(): RawAddon {
  if (!cached) {
    const path = findAddon();
    if (!existsSync(path)) {
      throw new Error(`the native addon is not built (${path}); run: npm run build:native`);
    }
    cached = createRequire(import.meta.url)(path) as RawAddon;
  }
  return cached;
}
