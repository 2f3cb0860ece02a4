/**
 * The gRPC data plane. Modules, one concept each:
 *
 *   server.ts           HyokServer.start({ deps, tls, listen, transport, services?, closeAfterDrain? })
 *                       → .port .address .health .reloadTls() .shutdown() (drain, then close)
 *   pipeline.ts         the steps every RPC runs through, reusable by other services:
 *                       identify(call) → beginCall(deps, spec, call, identity, request) →
 *                       authorize(deps, ctx, permission, keyName) / decide(...) →
 *                       (KeyResolver) → hsmBatch(deps, ctx, ops) → finishCall(deps, ctx, err)
 *                       unaryCall(deps, spec, handler, opHint) wires them for a unary RPC.
 *   hyok-service.ts     createHyokService(deps) — the hyok.v1.Hyok handlers
 *   dek-ops.ts          transport-independent wrap/unwrap/rewrap validation and ops
 *   tls-credentials.ts  ReloadableTls: mTLS server credentials, swappable at run time
 *   identity.ts         callerIdentity(authContext): verified certificate → identity
 *   health.ts           HealthMonitor: grpc.health.v1 from HSM state and audit health
 *   proto.ts            hyok.v1 package/service definitions (loaded once)
 *   observer.ts         CallObserver: what metrics implement
 *
 * The admin plane (hyok.admin.v1.KeyAdmin) on the same pipeline:
 *
 *   admin-service.ts    adminExtraService({ deps, keys, policy, store, policyFile?, quorum? })
 *                       → ExtraService for HyokServer.start({ services }); createAdminService
 *                       (the handlers), adminKeyMessage (a key view as hyok.admin.v1.Key)
 *   admin-proto.ts      hyok.admin.v1 package/service definitions (loaded once)
 *   quorum-gate.ts      QuorumGate seam: openGate (holds nothing), StoreQuorumGate({ store,
 *                       operations, approvals, ttlMs }) holds listed operations as pending
 *                       requests (QUORUM_REQUIRED); QUORUM_OPERATIONS names them
 */
export {
  HyokServer,
  DEFAULT_TRANSPORT,
  type HyokServerOptions,
  type TransportOptions,
  type ExtraService,
} from './server.js';
export {
  authorize,
  beginCall,
  CallContext,
  contextOf,
  decide,
  finishCall,
  hsmBatch,
  identify,
  rejectUnidentified,
  requestIdOf,
  unaryCall,
  type AuditItem,
  type AuditSink,
  type CallLike,
  type CallSpec,
  type CommonRequest,
  type PipelineDeps,
  type PolicyDecider,
  type RequestLimits,
} from './pipeline.js';
export { createHyokService, keyInfoMessage, type HyokServiceOptions } from './hyok-service.js';
export {
  ReloadableTls,
  readTlsMaterial,
  checkTlsMaterial,
  type TlsFiles,
  type TlsMaterial,
} from './tls-credentials.js';
export { callerIdentity, type CallerIdentity, type AuthContext } from './identity.js';
export { HealthMonitor } from './health.js';
export {
  HYOK_SERVICE_NAME,
  PROTO_LOADER_OPTIONS,
  hyokGrpcObject,
  hyokPackageDefinition,
  hyokServiceDefinition,
} from './proto.js';
export { noopObserver, type CallObserver, type CallReport, type IdentityClass } from './observer.js';
export {
  adminExtraService,
  adminKeyMessage,
  createAdminService,
  type AdminServiceOptions,
} from './admin-service.js';
export {
  ADMIN_SERVICE_NAME,
  adminGrpcObject,
  adminPackageDefinition,
  adminServiceDefinition,
} from './admin-proto.js';
export {
  QUORUM_CONTEXT_KEY,
  QUORUM_OPERATIONS,
  StoreQuorumGate,
  isQuorumOperation,
  openGate,
  quorumRequired,
  requestDigest,
  type QuorumGate,
  type QuorumOperation,
  type QuorumRequest,
  type QuorumVerdict,
  type StoreQuorumGateOptions,
} from './quorum-gate.js';
