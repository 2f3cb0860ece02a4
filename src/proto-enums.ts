// The protos' enum names for the key layer's kinds and operations (hyok.v1 KeyAlgorithm,
// hyok.admin.v1 KeyKind and KeyOperation), in one place for the server and the CLI.
import type { KeyKind, KeyOperation } from './store/types.js';

export const KIND_TO_ENUM: Readonly<Record<KeyKind, string>> = {
  'aes-256': 'AES_256',
  'rsa-3072': 'RSA_3072',
  'ec-p256': 'EC_P256',
};

export const OP_TO_ENUM: Readonly<Record<KeyOperation, string>> = {
  encrypt: 'ENCRYPT',
  decrypt: 'DECRYPT',
  wrapKey: 'WRAP_KEY',
  unwrapKey: 'UNWRAP_KEY',
  sign: 'SIGN',
  verify: 'VERIFY',
};

function invert<K extends string>(table: Readonly<Record<K, string>>): Readonly<Record<string, K>> {
  return Object.fromEntries(Object.entries(table).map(([k, v]) => [v, k])) as Record<string, K>;
}

export const KIND_FROM_ENUM = invert(KIND_TO_ENUM);
export const OP_FROM_ENUM = invert(OP_TO_ENUM);
