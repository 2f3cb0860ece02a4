// The permissions hyokd grants, after the key-vault model operators already know.

export const PERMISSIONS = [
  'encrypt',
  'decrypt',
  'wrapKey',
  'unwrapKey',
  'sign',
  'verify',
  'get',
  'list',
  'create',
  'update',
  'import',
  'delete',
  'recover',
  'backup',
  'restore',
  'purge',
] as const;

export type Permission = (typeof PERMISSIONS)[number];

const SET: ReadonlySet<string> = new Set(PERMISSIONS);

export function isPermission(value: unknown): value is Permission {
  return typeof value === 'string' && SET.has(value);
}
