// The key layer: the resolver contract, the lifecycle service and the BYOK packer.
export type { KeyResolver, KeyView, UsableVersion, VersionView } from './types.js';
export * from './key-service.js';
export { packImportBlob, parseImportBlob, importKeyFingerprint } from './import-blob.js';
export type { ParsedImportBlob } from './import-blob.js';
export { versionLabel, DEFAULT_OPERATIONS, KIND_OPERATIONS } from './naming.js';
