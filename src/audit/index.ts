// The audit log: hash-chained, signed, fail-closed. See writer.ts for the design.
export { AuditWriter, type AuditWriterOptions, type AuditStats, type AuditOpLogger } from './writer.js';
export { AuditError, AuditCodes } from './errors.js';
export {
  digestForAudit,
  sanitizeEvent,
  sanitizeValue,
  type AuditEvent,
  type AuditRecord,
  type AuditFields,
  type AuditIdentity,
  type AuditKeyRef,
  type RequestEvent,
  type QuorumEvent,
  type KeyJobEvent,
  type ReloadEvent,
  type ChainPoint,
  type TornTail,
} from './record.js';
export { type AuditSigner, keyIdForSpki, CHECKPOINT_ALG } from './signer.js';
export { HsmAuditSigner, spkiFromEcPoint } from './hsm-signer.js';
export { SoftwareAuditSigner } from './software-signer.js';
export { nodeAuditFs, type AuditFs } from './audit-fs.js';
export {
  verifyAuditDir,
  formatVerifyReport,
  type VerifyReport,
  type VerifyError,
  type VerifyErrorKind,
  type VerifyOptions,
} from './verify.js';
export { tailAudit, searchAudit, matchesSearch, formatAuditRecord, type AuditSearch } from './query.js';
