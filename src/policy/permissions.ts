// The permissions hyokd grants, after the key-vault model operators already know.

const USE_PERMISSIONS = [
  'encrypt',
  'decrypt',
  'wrapKey',
  'unwrapKey',
  'sign',
  'verify',
  'get',
  'list',
] as const;

/** The permissions only key management uses; a caller granted any of them is an administrator. */
export const MANAGEMENT_PERMISSIONS = [
  'create',
  'update',
  'import',
  'delete',
  'recover',
  'backup',
  'restore',
  'purge',
] as const;

export const PERMISSIONS = [...USE_PERMISSIONS, ...MANAGEMENT_PERMISSIONS] as const;

export type Permission = (typeof PERMISSIONS)[number];

const SET: ReadonlySet<string> = new Set(PERMISSIONS);

export function isPermission(value: unknown): value is Permission {
  return typeof value === 'string' && SET.has(value);
}
