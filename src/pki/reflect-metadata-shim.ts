// @peculiar/x509 2.x pulls in tsyringe, which refuses to load unless a Reflect metadata
// polyfill is installed first. tsyringe only needs define/get(Own)Metadata keyed by
// (target, property), so this installs that much, and only when no polyfill is present.
// It must be imported before @peculiar/x509 (see crypto-provider.ts).
// If the project adds the `reflect-metadata` package, this file can go.

type MetadataMap = Map<unknown, unknown>;
const store = new WeakMap<object, Map<PropertyKey | undefined, MetadataMap>>();

function own(target: object, property: PropertyKey | undefined, create: boolean): MetadataMap | undefined {
  let byProperty = store.get(target);
  if (byProperty === undefined) {
    if (!create) return undefined;
    byProperty = new Map();
    store.set(target, byProperty);
  }
  let map = byProperty.get(property);
  if (map === undefined && create) {
    map = new Map();
    byProperty.set(property, map);
  }
  return map;
}

interface ReflectMetadataApi {
  defineMetadata(key: unknown, value: unknown, target: object, property?: PropertyKey): void;
  getOwnMetadata(key: unknown, target: object, property?: PropertyKey): unknown;
  getMetadata(key: unknown, target: object, property?: PropertyKey): unknown;
  hasOwnMetadata(key: unknown, target: object, property?: PropertyKey): boolean;
  hasMetadata(key: unknown, target: object, property?: PropertyKey): boolean;
  metadata(key: unknown, value: unknown): (target: object, property?: PropertyKey) => void;
}

const R = Reflect as unknown as Partial<ReflectMetadataApi>;

if (typeof R.getMetadata !== 'function') {
  const api: ReflectMetadataApi = {
    defineMetadata(key, value, target, property) {
      own(target, property, true)!.set(key, value);
    },
    getOwnMetadata(key, target, property) {
      return own(target, property, false)?.get(key);
    },
    hasOwnMetadata(key, target, property) {
      return own(target, property, false)?.has(key) ?? false;
    },
    getMetadata(key, target, property) {
      for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
        const map = own(t, property, false);
        if (map?.has(key)) return map.get(key);
      }
      return undefined;
    },
    hasMetadata(key, target, property) {
      for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
        if (own(t, property, false)?.has(key)) return true;
      }
      return false;
    },
    metadata(key, value) {
      return (target, property) => api.defineMetadata(key, value, target, property);
    },
  };
  for (const [name, fn] of Object.entries(api)) {
    Object.defineProperty(Reflect, name, { value: fn, writable: true, configurable: true });
  }
}

export {};
