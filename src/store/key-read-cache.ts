// A bounded read cache for SqliteMetadataStore.getKeyWithVersion, the wrap/unwrap hot
// path. It is only as good as its invalidation, so the rules live here in one place:
//
// - The store clears it after every write transaction of its own, committed or rolled
//   back (writes are rare admin operations, so clearing everything is cheap enough).
// - Writes by ANOTHER connection (a second process, an operator's sqlite3 shell, a
//   second store instance on the same file) are seen through `PRAGMA data_version`,
//   which changes when another connection commits and not for our own commits. Reading
//   it costs about as much as the cached read saves, so it is read at most once per
//   event-loop turn (see `#checkOthers`).
// - Entries are deep-frozen so a caller cannot change what the next caller is given.
//   Buffers cannot be frozen: a version holding an SPKI is handed out as a frozen copy
//   with its own Buffer on every hit.
// - Size is capped; when full it is emptied, so unknown names (negative entries) cannot
//   grow memory, and names longer than any valid key name are never cached.

import type { KeyRecord, KeyVersionRecord } from './types.js';

export type KeyWithVersion = { key: KeyRecord; version: KeyVersionRecord | null };

/** Default entry cap: far above any real key count times the versions in use. */
export const DEFAULT_KEY_CACHE_ENTRIES = 4096;
/** Longer names cannot be valid key names (KEY_NAME_PATTERN allows 128); never cached. */
const MAX_CACHED_NAME_LENGTH = 128;

export class KeyReadCache {
  readonly #entries = new Map<string, KeyWithVersion | null>();
  readonly #max: number;
  readonly #dataVersion: () => number;
  #lastDataVersion: number;
  /** True from a data_version check until the next setImmediate (the loop's check phase). */
  #checkedThisTurn = false;
  readonly #resetTurn = (): void => {
    this.#checkedThisTurn = false;
  };

  /** `dataVersion` reads `PRAGMA data_version` of the store's own connection. */
  constructor(dataVersion: () => number, maxEntries: number = DEFAULT_KEY_CACHE_ENTRIES) {
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError('the key cache needs room for at least one entry');
    }
    this.#dataVersion = dataVersion;
    this.#max = maxEntries;
    this.#lastDataVersion = dataVersion();
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * The cache key for one read, or undefined when the read must bypass the cache (a
   * version that is not a safe integer, or an over-long name). The name is last and the
   * version never holds '\n', so two different reads never share a key.
   */
  keyFor(name: string, version: number | 'primary'): string | undefined {
    if (typeof name !== 'string' || name.length > MAX_CACHED_NAME_LENGTH) return undefined;
    if (version !== 'primary' && !Number.isSafeInteger(version)) return undefined;
    return `${version}\n${name}`;
  }

  /**
   * The cached result: an entry (possibly null, "no such key") or undefined on a miss.
   * Checks for other connections' commits first, once per event-loop turn.
   */
  get(cacheKey: string): KeyWithVersion | null | undefined {
    if (!this.#checkedThisTurn) this.#checkOthers();
    const hit = this.#entries.get(cacheKey);
    if (hit === undefined || hit === null) return hit;
    const spki = hit.version?.publicKeySpki;
    if (!spki) return hit;
    // A Buffer cannot be frozen: each caller gets its own copy of the SPKI.
    return Object.freeze({
      key: hit.key,
      version: Object.freeze({ ...(hit.version as KeyVersionRecord), publicKeySpki: Buffer.from(spki) }),
    });
  }

  /**
   * Freezes `value` (the caller must not keep a mutable reference), stores it, and returns
   * what a caller may be given. Must be called after `get` in the same synchronous run,
   * so the read it stores is no older than the last data_version check.
   */
  set(cacheKey: string, value: KeyWithVersion | null): KeyWithVersion | null {
    if (value === null) {
      this.#put(cacheKey, null);
      return null;
    }
    const key = value.key;
    Object.freeze(key.operations);
    Object.freeze(key.tags);
    Object.freeze(key.rotation);
    Object.freeze(key);
    const v = value.version;
    if (v === null || v.publicKeySpki === null) {
      const frozen = Object.freeze({ key, version: v === null ? null : Object.freeze(v) });
      this.#put(cacheKey, frozen);
      return frozen;
    }
    // Keep a private copy of the SPKI in the cache; the caller keeps the one it was given.
    const stored = Object.freeze({
      key,
      version: Object.freeze({ ...v, publicKeySpki: Buffer.from(v.publicKeySpki) }),
    });
    this.#put(cacheKey, stored);
    return Object.freeze({ key, version: Object.freeze(v) });
  }

  clear(): void {
    this.#entries.clear();
  }

  #put(cacheKey: string, value: KeyWithVersion | null): void {
    if (this.#entries.size >= this.#max) this.#entries.clear();
    this.#entries.set(cacheKey, value);
  }

  /**
   * Why once per turn is as good as once per call: every call in this turn runs after
   * this check, and a commit by another process that lands after the check is concurrent
   * with those calls (nothing orders it before them), so answering them from the state
   * as of the check is a valid serialization. The first call after the next check phase
   * (setImmediate) reads data_version again and drops everything if anyone committed.
   * So a commit by another connection is seen by every call that starts in a later
   * event-loop turn; our own commits clear the cache at once (see the store's #tx).
   */
  #checkOthers(): void {
    const dv = this.#dataVersion();
    if (dv !== this.#lastDataVersion) {
      this.#lastDataVersion = dv;
      this.#entries.clear();
    }
    this.#checkedThisTurn = true;
    setImmediate(this.#resetTurn);
  }
}
