// A bounded memo: values by key, at most `max` of them. When full it starts again empty
// instead of tracking recency: what it holds is cheap to recompute, the keys that matter
// come back at once, and a full map that only ever clears cannot be made to grow by keys
// a caller chooses (an identity, a key name from an envelope header, a rule name).
export class Memo<K, V> {
  readonly #map = new Map<K, V>();
  constructor(readonly max: number) {}

  get(k: K): V | undefined {
    return this.#map.get(k);
  }

  /** Stores `v` (emptying the memo first when it is full) and returns it. */
  set(k: K, v: V): V {
    if (this.#map.size >= this.max) this.#map.clear();
    this.#map.set(k, v);
    return v;
  }

  clear(): void {
    this.#map.clear();
  }
}
