// The metadata store: contract, errors and the embedded SQLite implementation.
export * from './types.js';
export * from './errors.js';
export {
  openSqliteStore,
  storePathIn,
  migrate,
  SqliteMetadataStore,
  STORE_FILE_NAME,
} from './sqlite-store.js';
export type { SqliteStoreOptions } from './sqlite-store.js';
export { MIGRATIONS, LATEST_SCHEMA_VERSION } from './migrations.js';
export type { Migration } from './migrations.js';
