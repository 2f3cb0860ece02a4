// hyok.admin.v1.KeyAdmin: key lifecycle and policy administration, each RPC built from
// the same pipeline steps as hyok.v1 (identity → request id/context → policy decision →
// validation → quorum gate → KeyService/PolicyHolder → durable audit → observer → error).
//
// Permissions (key-vault vocabulary; the decision's rule is audited and, on denial,
// returned in ErrorInfo metadata `rule`):
//   CreateKey create(name)      ListKeys list(-)          GetKey get(name)
//   RotateKey, SetKeyState, SetRotationPolicy, SetTags     update(name)
//   EnablePurgeProtection update(name)
//   DeleteKey delete(name)      RecoverKey recover(name)  PurgeKey purge(name)
//   AdoptKey import(name)       ImportKey import(name)    CreateImportKey import(-)
//   BackupKey backup(name)      RestoreKey restore(-)  (the name is sealed inside the
//                               blob, so the decision is key-less; the audit record
//                               names the restored key)
//   GetPolicy list(-)           ExplainPolicy list(-)     SetPolicy update(-)
//   InitSecurityDomain, JoinSecurityDomain restore(-)     GetSecurityDomain list(-)
// "(-)" is a key-less request: only bindings without `keys` (and deny rules without
// `keys`) match it, so a key-scoped admin cannot read or replace the policy, nor bind
// the store to a security domain.
//
// Why `restore` for the security domain: the domain decides which backup blobs this
// daemon accepts (RestoreKey refuses blobs of any other domain), and creating or joining
// one is exactly choosing that. Whoever may restore key-less already holds that trust;
// `create` would hand it to every key creator, and no permission of its own exists in
// the key-vault vocabulary policies are written in.
//
// Quorum: DeleteKey, PurgeKey, RecoverKey, BackupKey, RestoreKey, ImportKey, AdoptKey,
// RotateKey, CreateKey, SetPolicy, disabling a purge-protected key, enabling purge
// protection and creating or joining a security domain ask the QuorumGate after
// authorization and validation and before anything changes (quorum-gate.ts). The last
// three ask only when the call would change something: protecting a protected key, or
// InitSecurityDomain on a bound store, returns the current state without being held.
//
// SetPolicy validates the document (POLICY_INVALID with the problem list in ErrorInfo
// metadata `problems`, a JSON array; the old policy stays), checks the etag, writes the
// policy file atomically (temporary file, mode 0600, fsync, rename) so a later SIGHUP
// reload keeps it, stores the revision, swaps the PolicyHolder and audits a `reload`
// event. The etag is the first 16 hex of SHA-256 of the document text in force. A stale
// etag fails with ETAG_MISMATCH (ABORTED, the usual status of an optimistic-concurrency
// conflict; the error registry and admin.proto say the same).
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { digestForAudit } from '../audit/index.js';
import { HyokError } from '../errors.js';
import type { AdminKeyView, ImportWrapAlgorithm, KeyService } from '../keys/index.js';
import {
  explain,
  isPermission,
  parsePolicy,
  PolicyError,
  policyFormatOf,
  type AuthzRequest,
  type PolicyFormat,
  type PolicyHolder,
} from '../policy/index.js';
import type { KeyKind, KeyOperation, MetadataStore, RotationPolicy, Tags } from '../store/types.js';
import { KIND_FROM_ENUM, KIND_TO_ENUM, OP_FROM_ENUM, OP_TO_ENUM } from '../proto-enums.js';
import { ADMIN_PROTO_FILE, ADMIN_SERVICE_NAME, adminServiceDefinition } from './admin-proto.js';
import { checkKeyName } from './dek-ops.js';
import {
  authorize,
  contextOf,
  unaryCall,
  type CallContext,
  type CallSpec,
  type CommonRequest,
  type PipelineDeps,
} from './pipeline.js';
import {
  openGate,
  quorumRequired,
  type QuorumGate,
  type QuorumOperation,
  type QuorumRequest,
} from './quorum-gate.js';
import type { ExtraService } from './server.js';

export interface AdminServiceOptions {
  /** The same pipeline deps hyok.v1 runs on (policy, audit, observer, limits, log). */
  deps: PipelineDeps;
  keys: KeyService;
  /** The live policy; should be the object behind deps.policy. */
  policy: PolicyHolder;
  store: MetadataStore;
  /** Where SetPolicy writes the document; default policy.path (none: store only). */
  policyFile?: string | null;
  /** Default: nothing is held. */
  quorum?: QuorumGate;
  /** Largest backup / import blob accepted. Default 1 MiB. */
  maxBlobBytes?: number;
  /** Largest policy document accepted. Default 256 KiB. */
  maxPolicyBytes?: number;
}

const DAY_S = 86_400;

function spec(method: string): CallSpec {
  return { service: ADMIN_SERVICE_NAME, method, plane: 'admin', audited: true };
}

function invalid(detail: string): HyokError {
  return new HyokError('INVALID_REQUEST', { params: { detail } });
}

// ---- proto <-> key layer ---------------------------------------------------------------

const STATE_ENUM: Record<string, string> = {
  enabled: 'ENABLED',
  disabled: 'DISABLED',
  'soft-deleted': 'DELETED',
};
const ORIGIN_ENUM: Record<string, string> = {
  generated: 'GENERATED',
  imported: 'IMPORTED',
  adopted: 'ADOPTED',
  restored: 'RESTORED',
};
const WRAP_ALGORITHMS: readonly ImportWrapAlgorithm[] = [
  'RSA_AES_KEY_WRAP_SHA1',
  'RSA_AES_KEY_WRAP_SHA256',
  'RSA_OAEP_SHA256',
];

interface Timestamp {
  seconds: string;
  nanos: number;
}

function timestamp(ms: number | null | undefined): Timestamp | null {
  if (ms === null || ms === undefined) return null;
  const s = Math.floor(ms / 1000);
  return { seconds: String(s), nanos: (ms - s * 1000) * 1e6 };
}

/** A view as hyok.admin.v1.Key. */
export function adminKeyMessage(v: AdminKeyView): Record<string, unknown> {
  const days = v.rotation.rotationPeriodDays;
  return {
    name: v.name,
    kind: KIND_TO_ENUM[v.kind],
    state: STATE_ENUM[v.state] ?? 'KEY_STATE_UNSPECIFIED',
    primaryVersion: v.primaryVersion ?? 0,
    versions: v.versions.map((x) => ({
      version: x.version,
      state: x.state === 'enabled' ? 'VERSION_ENABLED' : 'VERSION_DISABLED',
      createdTime: timestamp(x.createdAt),
      origin: ORIGIN_ENUM[v.origin] ?? 'KEY_ORIGIN_UNSPECIFIED',
      publicKeySpki: x.publicKeySpki ?? Buffer.alloc(0),
      hsmObjectId: x.hsmObjectId,
    })),
    allowedOperations: v.operations.map((o) => OP_TO_ENUM[o]),
    tags: { ...v.tags },
    retentionDays: v.retentionDays,
    purgeProtection: v.purgeProtection,
    rotationPolicy: {
      rotateAfter: days === undefined ? null : { seconds: String(days * DAY_S), nanos: 0 },
      nextRotationTime: timestamp(v.nextRotationAt),
    },
    createdTime: timestamp(v.createdAt),
    updatedTime: timestamp(v.updatedAt),
    deletedTime: timestamp(v.deletedAt),
    scheduledPurgeTime: timestamp(v.scheduledPurgeAt),
  };
}

function kindOf(value: unknown): KeyKind {
  const k = typeof value === 'string' ? KIND_FROM_ENUM[value] : undefined;
  if (!k) throw invalid('kind must be AES_256, RSA_3072 or EC_P256');
  return k;
}

function operationsOf(value: unknown): KeyOperation[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid('allowed_operations must be a list');
  if (value.length > 16) throw invalid('allowed_operations has too many entries');
  return value.map((v) => {
    const op = typeof v === 'string' ? OP_FROM_ENUM[v] : undefined;
    if (!op) throw invalid(`unknown operation ${JSON.stringify(v)}`);
    return op;
  });
}

function tagsOf(value: unknown, field = 'tags'): Tags {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid(`${field} must be a map`);
  return { ...(value as Tags) };
}

function uintOf(value: unknown, field: string): number {
  if (value === undefined || value === null) return 0;
  const n = typeof value === 'string' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
    throw invalid(`${field} must be a whole number`);
  return n;
}

/** rotate_after → whole days (0 or unset: no automatic rotation). */
function rotationDaysOf(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  const rp = value as { rotateAfter?: { seconds?: unknown; nanos?: unknown } | null };
  const d = rp.rotateAfter;
  if (!d) return undefined;
  const seconds = Number(d.seconds ?? 0);
  const nanos = Number(d.nanos ?? 0);
  if (!Number.isSafeInteger(seconds) || seconds < 0 || nanos !== 0) {
    throw invalid('rotation_policy.rotate_after must be a non-negative whole number of days');
  }
  if (seconds === 0) return undefined;
  if (seconds % DAY_S !== 0) throw invalid('rotation_policy.rotate_after must be a whole number of days');
  return seconds / DAY_S;
}

function bytesOf(value: unknown, field: string, max: number): Buffer {
  if (value === undefined || value === null) return Buffer.alloc(0);
  if (!(value instanceof Uint8Array)) throw invalid(`${field} must be bytes`);
  const b = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (b.length > max) throw invalid(`${field} is ${b.length} bytes; the limit is ${max}`);
  return b;
}

function shortString(value: unknown, field: string, max: number): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string' || value.length > max) {
    throw invalid(`${field} must be a string of at most ${max} characters`);
  }
  return value;
}

// ---- request shapes (as proto-loader decodes them) --------------------------------------

interface NamedRequest extends CommonRequest {
  name?: string;
}
interface CreateKeyRequest extends NamedRequest {
  kind?: string;
  allowedOperations?: string[];
  tags?: Tags;
  retentionDays?: number;
  purgeProtection?: boolean;
  rotationPolicy?: unknown;
  backupable?: boolean;
}
interface ListKeysRequest extends CommonRequest {
  pageSize?: number;
  pageToken?: string;
  includeDeleted?: boolean;
  tagFilter?: Tags;
}
interface SetKeyStateRequest extends NamedRequest {
  enabled?: boolean;
  version?: number | null;
  _version?: string;
}
interface AdoptKeyRequest extends CreateKeyRequest {
  selector?: string;
  hsmObjectId?: Buffer;
  hsmLabel?: string;
  allowExtractable?: boolean;
}
interface RestoreKeyRequest extends CommonRequest {
  backup?: Buffer;
}
interface CreateImportKeyRequest extends CommonRequest {
  kind?: string;
}
interface ImportKeyRequest extends CreateKeyRequest {
  importKeyId?: string;
  wrapAlgorithm?: string;
  wrappedKeyMaterial?: Buffer;
  newVersion?: boolean;
}
interface SetRotationPolicyRequest extends NamedRequest {
  rotationPolicy?: unknown;
}
interface SetTagsRequest extends NamedRequest {
  tags?: Tags;
  replace?: boolean;
  remove?: string[];
}
interface SetPolicyRequest extends CommonRequest {
  document?: string;
  etag?: string;
}
interface JoinSecurityDomainRequest extends CommonRequest {
  domainId?: string;
  backupKeyId?: string;
}
interface ExplainPolicyRequest extends CommonRequest {
  identity?: string;
  operation?: string;
  keyName?: string;
  requestContext?: Record<string, string>;
}

// ---- the policy document in force ---------------------------------------------------------

interface PolicyText {
  text: string;
  etag: string;
  generation: number;
}

function etagOf(text: string): string {
  return digestForAudit(text);
}

/** Writes `text` to `path` atomically: temporary file (0600) in the same directory, fsync, rename. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  try {
    const dir = await open(dirname(path), 'r');
    await dir.sync().catch(() => undefined);
    await dir.close();
  } catch {
    // Directory fsync is best effort (not every platform allows opening a directory).
  }
}

// ---- the service ---------------------------------------------------------------------

/** The handlers of hyok.admin.v1.KeyAdmin. */
export function createAdminService(opts: AdminServiceOptions): UntypedServiceImplementation {
  const { deps, keys, policy, store } = opts;
  const quorum = opts.quorum ?? openGate;
  const maxBlob = opts.maxBlobBytes ?? 1024 * 1024;
  const maxPolicy = opts.maxPolicyBytes ?? 256 * 1024;
  const policyFile = opts.policyFile === undefined ? policy.path : opts.policyFile;
  let format: PolicyFormat = 'yaml';
  if (policyFile) {
    try {
      format = policyFormatOf(policyFile);
    } catch {
      format = 'yaml';
    }
  }

  // What GetPolicy shows: the text the holder was loaded from. A SIGHUP reload (which
  // bumps policy.generation) re-reads the file; SetPolicy updates this directly.
  let inForce: PolicyText | null = null;
  if (policyFile) {
    try {
      const text = readFileSync(policyFile, 'utf8');
      inForce = { text, etag: etagOf(text), generation: policy.generation };
    } catch {
      inForce = null;
    }
  }
  let updatedAtFallback = 0;
  if (policyFile) {
    try {
      updatedAtFallback = statSync(policyFile).mtimeMs;
    } catch {
      updatedAtFallback = 0;
    }
  }

  async function currentPolicy(): Promise<PolicyText> {
    if (inForce && inForce.generation === policy.generation) return inForce;
    if (policyFile) {
      try {
        const text = await readFile(policyFile, 'utf8');
        updatedAtFallback = (await stat(policyFile)).mtimeMs;
        inForce = { text, etag: etagOf(text), generation: policy.generation };
        return inForce;
      } catch {
        // Fall back to the store's last revision.
      }
    }
    const rec = await store.getCurrentPolicyDocument();
    const text = rec?.text ?? '';
    inForce = { text, etag: text ? etagOf(text) : '', generation: policy.generation };
    return inForce;
  }

  async function policyMessage(p: PolicyText): Promise<Record<string, unknown>> {
    const rec = await store.getCurrentPolicyDocument();
    const fromStore = rec !== null && etagOf(rec.text) === p.etag;
    return {
      document: p.text,
      etag: p.etag,
      updatedTime: timestamp(fromStore ? rec.createdAt : updatedAtFallback || null),
      updatedBy: fromStore ? rec.createdBy : '',
    };
  }

  /** The quorum step: held calls fail with QUORUM_REQUIRED (and a quorum audit record). */
  async function gate(
    ctx: CallContext,
    op: QuorumOperation,
    keyName: string | null,
    params: QuorumRequest['params'],
  ): Promise<void> {
    const v = await quorum.check(op, keyName, ctx.identity.identity, { params, context: ctx.context });
    if (v === 'proceed') return;
    ctx.details = { ...(ctx.details ?? {}), quorumRequestId: v.held };
    if (deps.audit) {
      await deps.audit.append({
        type: 'quorum',
        action: 'requested',
        quorumId: v.held,
        op,
        ...(keyName ? { key: { name: keyName } } : {}),
        identity: ctx.identity.audit,
        required: quorum.requirement(op).approvals,
        requestId: ctx.requestId,
      });
    }
    throw quorumRequired(v.held);
  }

  /** Name check + audit key + decision: the common head of every per-key RPC. */
  function keyCall(ctx: CallContext, req: NamedRequest, permission: Parameters<typeof authorize>[2]): string {
    const name = checkKeyName(req.name);
    ctx.key = { name };
    authorize(deps, ctx, permission, name);
    return name;
  }

  function keyResult(
    ctx: CallContext,
    view: AdminKeyView,
    version?: number,
  ): { key: Record<string, unknown> } {
    ctx.key = { name: view.name, version: version ?? view.primaryVersion ?? undefined };
    if (ctx.key.version === undefined) ctx.key = { name: view.name };
    return { key: adminKeyMessage(view) };
  }

  const CreateKey = unaryCall(deps, spec('CreateKey'), async (ctx, req: CreateKeyRequest) => {
    const name = keyCall(ctx, req, 'create');
    const kind = kindOf(req.kind);
    const operations = operationsOf(req.allowedOperations);
    const tags = tagsOf(req.tags);
    const retentionDays = uintOf(req.retentionDays, 'retention_days');
    const days = rotationDaysOf(req.rotationPolicy);
    const rotation: RotationPolicy = days === undefined ? {} : { rotationPeriodDays: days };
    const purgeProtection = req.purgeProtection === true;
    const backupable = req.backupable === true;
    if (backupable) ctx.details = { backupable };
    await gate(ctx, 'CreateKey', name, {
      kind,
      operations: operations.join(','),
      purgeProtection,
      retentionDays,
      ...(backupable ? { backupable } : {}),
    });
    const view = await keys.createKey({
      name,
      kind,
      operations,
      tags,
      retentionDays,
      purgeProtection,
      rotation,
      backupable,
    });
    return keyResult(ctx, view);
  });

  const ListKeys = unaryCall(deps, spec('ListKeys'), async (ctx, req: ListKeysRequest) => {
    const pageSize = uintOf(req.pageSize, 'page_size');
    const pageToken = shortString(req.pageToken, 'page_token', 512);
    const tagFilter = tagsOf(req.tagFilter, 'tag_filter');
    authorize(deps, ctx, 'list', undefined);
    const res = await keys.listKeys({
      pageSize: Math.min(pageSize, 1000),
      pageToken,
      includeDeleted: req.includeDeleted === true,
      ...(Object.keys(tagFilter).length > 0 ? { tagFilter } : {}),
    });
    ctx.details = { count: res.keys.length };
    return { keys: res.keys.map(adminKeyMessage), nextPageToken: res.nextPageToken };
  });

  const GetKey = unaryCall(deps, spec('GetKey'), async (ctx, req: NamedRequest) => {
    const name = keyCall(ctx, req, 'get');
    return keyResult(ctx, await keys.describe(name));
  });

  const RotateKey = unaryCall(deps, spec('RotateKey'), async (ctx, req: NamedRequest) => {
    const name = keyCall(ctx, req, 'update');
    await gate(ctx, 'RotateKey', name, {});
    const reason = ctx.context.reason;
    const { key, newVersion } = await keys.rotateKey(name, reason ? { reason } : {});
    return { ...keyResult(ctx, key, newVersion), newVersion };
  });

  const SetKeyState = unaryCall(deps, spec('SetKeyState'), async (ctx, req: SetKeyStateRequest) => {
    const name = keyCall(ctx, req, 'update');
    const enabled = req.enabled === true;
    const hasVersion = req._version === 'version' || (req.version !== undefined && req.version !== null);
    let version: number | undefined;
    if (hasVersion) {
      version = uintOf(req.version, 'version');
      if (version < 1) throw invalid('version must be 1 or more');
      ctx.key = { name, version };
    }
    ctx.details = { enabled };
    if (!enabled) {
      const cur = await keys.describe(name);
      if (cur.purgeProtection) {
        await gate(ctx, 'DisableProtectedKey', name, { enabled, version: version ?? null });
      }
    }
    const view = await keys.setKeyState(name, enabled, version);
    return keyResult(ctx, view, version);
  });

  const DeleteKey = unaryCall(deps, spec('DeleteKey'), async (ctx, req: NamedRequest) => {
    const name = keyCall(ctx, req, 'delete');
    await gate(ctx, 'DeleteKey', name, {});
    return keyResult(ctx, await keys.deleteKey(name));
  });

  const RecoverKey = unaryCall(deps, spec('RecoverKey'), async (ctx, req: NamedRequest) => {
    const name = keyCall(ctx, req, 'recover');
    await gate(ctx, 'RecoverKey', name, {});
    return keyResult(ctx, await keys.recoverKey(name));
  });

  const PurgeKey = unaryCall(deps, spec('PurgeKey'), async (ctx, req: NamedRequest) => {
    const name = keyCall(ctx, req, 'purge');
    await gate(ctx, 'PurgeKey', name, {});
    const r = await keys.purgeKey(name);
    return { name: r.name, purgedTime: timestamp(r.purgedAt) };
  });

  const EnablePurgeProtection = unaryCall(
    deps,
    spec('EnablePurgeProtection'),
    async (ctx, req: NamedRequest) => {
      const name = keyCall(ctx, req, 'update');
      const cur = await keys.describe(name);
      // One-way and idempotent: a key already protected is returned as it is, unheld.
      if (cur.purgeProtection) {
        ctx.details = { changed: false };
        return keyResult(ctx, cur);
      }
      await gate(ctx, 'EnablePurgeProtection', name, {});
      ctx.details = { changed: true };
      return keyResult(ctx, await keys.enablePurgeProtection(name));
    },
  );

  const AdoptKey = unaryCall(deps, spec('AdoptKey'), async (ctx, req: AdoptKeyRequest) => {
    const name = keyCall(ctx, req, 'import');
    const kind = kindOf(req.kind);
    let selector: { hsmObjectId: Buffer } | { hsmLabel: string };
    if (req.selector === 'hsmObjectId') {
      const id = bytesOf(req.hsmObjectId, 'hsm_object_id', 128);
      if (id.length === 0) throw invalid('hsm_object_id must not be empty');
      selector = { hsmObjectId: id };
    } else if (req.selector === 'hsmLabel') {
      const label = shortString(req.hsmLabel, 'hsm_label', 256);
      if (label.length === 0) throw invalid('hsm_label must not be empty');
      selector = { hsmLabel: label };
    } else {
      throw invalid('give exactly one of hsm_object_id and hsm_label');
    }
    const operations = operationsOf(req.allowedOperations);
    const tags = tagsOf(req.tags);
    const retentionDays = uintOf(req.retentionDays, 'retention_days');
    const purgeProtection = req.purgeProtection === true;
    const allowExtractable = req.allowExtractable === true;
    ctx.details = {
      ...('hsmObjectId' in selector
        ? { hsmObjectId: selector.hsmObjectId.toString('hex') }
        : { hsmLabel: selector.hsmLabel }),
      ...(allowExtractable ? { allowExtractable } : {}),
    };
    await gate(ctx, 'AdoptKey', name, {
      kind,
      ...('hsmObjectId' in selector
        ? { hsmObjectId: selector.hsmObjectId.toString('hex') }
        : { hsmLabel: selector.hsmLabel }),
      operations: operations.join(','),
      purgeProtection,
      allowExtractable,
      retentionDays,
    });
    const view = await keys.adoptKey({
      name,
      kind,
      ...selector,
      operations,
      tags,
      retentionDays,
      purgeProtection,
      ...(allowExtractable ? { allowExtractable } : {}),
    });
    return keyResult(ctx, view);
  });

  const BackupKey = unaryCall(deps, spec('BackupKey'), async (ctx, req: NamedRequest) => {
    const name = keyCall(ctx, req, 'backup');
    await gate(ctx, 'BackupKey', name, {});
    const r = await keys.backupKey(name);
    ctx.details = { backup: digestForAudit(r.backup), securityDomain: r.securityDomain };
    return { backup: r.backup, securityDomain: r.securityDomain };
  });

  const RestoreKey = unaryCall(deps, spec('RestoreKey'), async (ctx, req: RestoreKeyRequest) => {
    const blob = bytesOf(req.backup, 'backup', maxBlob);
    if (blob.length === 0) throw invalid('backup must not be empty');
    const digest = digestForAudit(blob);
    ctx.details = { backup: digest };
    authorize(deps, ctx, 'restore', undefined);
    await gate(ctx, 'RestoreKey', null, { backup: digest });
    return keyResult(ctx, await keys.restoreKey(blob));
  });

  async function domainMessage(): Promise<Record<string, unknown> | null> {
    const d = await store.getDomain();
    if (!d) return null;
    return {
      domainId: d.domainId,
      backupKeyId: typeof d.metadata.backupKeyId === 'string' ? d.metadata.backupKeyId : '',
      boundTime: timestamp(d.createdAt),
    };
  }

  const InitSecurityDomain = unaryCall(deps, spec('InitSecurityDomain'), async (ctx) => {
    authorize(deps, ctx, 'restore', undefined);
    const existing = await domainMessage();
    if (existing) {
      ctx.details = { securityDomain: existing.domainId as string, created: false };
      return { domain: existing, created: false };
    }
    await gate(ctx, 'InitSecurityDomain', null, {});
    const r = await keys.initDomain();
    ctx.details = { securityDomain: r.domainId, backupKeyId: r.backupKeyId, created: true };
    return { domain: await domainMessage(), created: true };
  });

  const JoinSecurityDomain = unaryCall(
    deps,
    spec('JoinSecurityDomain'),
    async (ctx, req: JoinSecurityDomainRequest) => {
      const domainId = shortString(req.domainId, 'domain_id', 128);
      if (!/^[A-Za-z0-9._:-]{1,128}$/.test(domainId)) {
        throw invalid('domain_id must be 1-128 characters of [A-Za-z0-9._:-]');
      }
      const backupKeyId = shortString(req.backupKeyId, 'backup_key_id', 128);
      if (!/^(?:[0-9a-f]{2}){1,64}$/.test(backupKeyId)) {
        throw invalid('backup_key_id must be 1-64 bytes of lowercase hex');
      }
      ctx.details = { securityDomain: domainId, backupKeyId };
      authorize(deps, ctx, 'restore', undefined);
      await gate(ctx, 'JoinSecurityDomain', null, { domainId, backupKeyId });
      await keys.joinDomain(domainId, backupKeyId);
      return { domain: await domainMessage() };
    },
  );

  const GetSecurityDomain = unaryCall(deps, spec('GetSecurityDomain'), async (ctx) => {
    authorize(deps, ctx, 'list', undefined);
    const domain = await domainMessage();
    ctx.details = { securityDomain: domain ? (domain.domainId as string) : null };
    return { domain };
  });

  const CreateImportKey = unaryCall(
    deps,
    spec('CreateImportKey'),
    async (ctx, req: CreateImportKeyRequest) => {
      if (req.kind !== undefined && req.kind !== 'KEY_KIND_UNSPECIFIED' && req.kind !== 'RSA_3072') {
        throw invalid('import keys are RSA_3072 (or KEY_KIND_UNSPECIFIED)');
      }
      authorize(deps, ctx, 'import', undefined);
      const h = await keys.createImportKey();
      ctx.details = { importKeyId: h.importKeyId };
      return {
        importKeyId: h.importKeyId,
        publicKeySpki: h.publicKeySpki,
        supportedAlgorithms: h.supportedAlgorithms,
        expireTime: timestamp(h.expiresAt),
      };
    },
  );

  const ImportKey = unaryCall(deps, spec('ImportKey'), async (ctx, req: ImportKeyRequest) => {
    const name = keyCall(ctx, req, 'import');
    const kind = kindOf(req.kind);
    const importKeyId = shortString(req.importKeyId, 'import_key_id', 128);
    if (importKeyId.length === 0) throw invalid('import_key_id is required');
    let wrapAlgorithm: ImportWrapAlgorithm | undefined;
    if (req.wrapAlgorithm !== undefined && req.wrapAlgorithm !== 'IMPORT_WRAP_ALGORITHM_UNSPECIFIED') {
      if (!(WRAP_ALGORITHMS as readonly unknown[]).includes(req.wrapAlgorithm)) {
        throw invalid(`unknown wrap_algorithm ${JSON.stringify(req.wrapAlgorithm)}`);
      }
      wrapAlgorithm = req.wrapAlgorithm as ImportWrapAlgorithm;
    }
    const wrapped = bytesOf(req.wrappedKeyMaterial, 'wrapped_key_material', maxBlob);
    if (wrapped.length === 0) throw invalid('wrapped_key_material must not be empty');
    const newVersion = req.newVersion === true;
    const operations = operationsOf(req.allowedOperations);
    const tags = tagsOf(req.tags);
    const retentionDays = uintOf(req.retentionDays, 'retention_days');
    const purgeProtection = req.purgeProtection === true;
    const digest = digestForAudit(wrapped);
    ctx.details = { importKeyId, wrapped: digest, newVersion };
    await gate(ctx, 'ImportKey', name, {
      kind,
      importKeyId,
      wrapped: digest,
      newVersion,
      operations: operations.join(','),
      purgeProtection,
      retentionDays,
    });
    const r = await keys.importKey({
      name,
      kind,
      importKeyId,
      wrapped,
      ...(wrapAlgorithm ? { wrapAlgorithm } : {}),
      newVersion,
      operations,
      tags,
      retentionDays,
      purgeProtection,
    });
    return { ...keyResult(ctx, r.key, r.version), version: r.version };
  });

  const SetRotationPolicy = unaryCall(
    deps,
    spec('SetRotationPolicy'),
    async (ctx, req: SetRotationPolicyRequest) => {
      const name = keyCall(ctx, req, 'update');
      const days = rotationDaysOf(req.rotationPolicy);
      // The proto carries only the period: expiry and notice set elsewhere are kept.
      const cur = await keys.describe(name);
      const { rotationPeriodDays: _old, ...rest } = cur.rotation;
      const next: RotationPolicy = days === undefined ? rest : { ...rest, rotationPeriodDays: days };
      ctx.details = { rotationPeriodDays: days ?? 0 };
      return keyResult(ctx, await keys.setRotationPolicy(name, next));
    },
  );

  const SetTags = unaryCall(deps, spec('SetTags'), async (ctx, req: SetTagsRequest) => {
    const name = keyCall(ctx, req, 'update');
    const tags = tagsOf(req.tags);
    const remove = req.remove ?? [];
    if (
      !Array.isArray(remove) ||
      remove.length > 64 ||
      remove.some((r) => typeof r !== 'string' || r.length > 128)
    ) {
      throw invalid('remove must list at most 64 tag names of at most 128 characters');
    }
    return keyResult(ctx, await keys.setTags(name, { tags, replace: req.replace === true, remove }));
  });

  const GetPolicy = unaryCall(deps, spec('GetPolicy'), async (ctx) => {
    authorize(deps, ctx, 'list', undefined);
    const p = await currentPolicy();
    ctx.details = { etag: p.etag };
    return { policy: await policyMessage(p) };
  });

  // SetPolicy calls are serialized so the etag check and the swap are one step.
  let policyLock: Promise<unknown> = Promise.resolve();

  const SetPolicy = unaryCall(deps, spec('SetPolicy'), async (ctx, req: SetPolicyRequest) => {
    if (typeof req.document !== 'string' || req.document.length === 0) throw invalid('document is required');
    const text = req.document;
    if (Buffer.byteLength(text, 'utf8') > maxPolicy) {
      throw invalid(`document is larger than ${maxPolicy} bytes`);
    }
    const etag = shortString(req.etag, 'etag', 128);
    const digest = digestForAudit(text);
    ctx.details = { digest };
    authorize(deps, ctx, 'update', undefined);
    try {
      parsePolicy(text, format);
    } catch (e) {
      const problems =
        e instanceof PolicyError ? [...e.problems] : ['(internal): the document could not be checked'];
      if (deps.audit) {
        await deps.audit.append({
          type: 'reload',
          what: 'policy',
          ok: false,
          digest,
          code: 'POLICY_INVALID',
          details: { source: 'admin-api', by: ctx.identity.identity, requestId: ctx.requestId },
        });
      }
      const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
      throw new HyokError('POLICY_INVALID', {
        params: { detail: `${problems[0] ?? 'invalid'}${more}` },
        metadata: { problems: JSON.stringify(problems.slice(0, 100)), problemCount: String(problems.length) },
      });
    }
    await gate(ctx, 'SetPolicy', null, { document: digest, etag });
    const run = policyLock.then(async () => {
      const before = await currentPolicy();
      if (etag !== '' && etag !== before.etag) throw new HyokError('ETAG_MISMATCH');
      if (policyFile) await writeAtomically(policyFile, text);
      let revision: number;
      try {
        revision = (await store.savePolicyDocument({ format, text, createdBy: ctx.identity.identity }))
          .revision;
      } catch (e) {
        if (policyFile && before.text) await writeAtomically(policyFile, before.text).catch(() => undefined);
        throw e;
      }
      const r = await policy.replace(text, format);
      if (!r.ok) {
        if (policyFile && before.text) await writeAtomically(policyFile, before.text).catch(() => undefined);
        throw new HyokError('POLICY_INVALID', { params: { detail: r.problems[0] ?? 'invalid' } });
      }
      inForce = { text, etag: etagOf(text), generation: r.generation };
      if (deps.audit) {
        await deps.audit.append({
          type: 'reload',
          what: 'policy',
          ok: true,
          digest,
          details: {
            source: 'admin-api',
            by: ctx.identity.identity,
            revision,
            generation: r.generation,
            requestId: ctx.requestId,
          },
        });
      }
      ctx.details = { digest, revision };
      return inForce;
    });
    policyLock = run.catch(() => undefined);
    return { policy: await policyMessage(await run) };
  });

  const ExplainPolicy = unaryCall(deps, spec('ExplainPolicy'), async (ctx, req: ExplainPolicyRequest) => {
    const who = shortString(req.identity, 'identity', 1024);
    const operation = req.operation;
    if (!isPermission(operation)) throw invalid(`unknown operation ${JSON.stringify(operation)}`);
    const keyName = req.keyName ? checkKeyName(req.keyName) : undefined;
    const requestContext = contextOf(req.requestContext, deps.limits.maxContextEntries);
    authorize(deps, ctx, 'list', undefined);
    const areq: AuthzRequest = { identity: who || ctx.identity.identity, permission: operation };
    if (keyName !== undefined) areq.keyName = keyName;
    if (requestContext.reason) areq.reason = requestContext.reason;
    const ex = explain(policy.current, areq);
    ctx.details = {
      subject: areq.identity,
      operation,
      allowed: ex.decision.allowed,
      decidedBy: ex.decision.rule,
    };
    if (keyName) ctx.details.keyName = keyName;
    const held = quorumOpsFor(operation, keyName).filter((op) => quorum.requirement(op).required);
    return {
      allowed: ex.decision.allowed,
      decidedBy: ex.decision.rule,
      explanation: ex.decision.explanation,
      quorumRequired: held.length > 0,
      quorumApprovals: held.length > 0 ? quorum.requirement(held[0]!).approvals : 0,
      trace: ex.steps.map((s) => ({ rule: s.rule, matched: s.matched, note: s.detail })),
      quorumOperations: held,
    };
  });

  return {
    CreateKey,
    ListKeys,
    GetKey,
    RotateKey,
    SetKeyState,
    DeleteKey,
    RecoverKey,
    PurgeKey,
    EnablePurgeProtection,
    AdoptKey,
    BackupKey,
    RestoreKey,
    CreateImportKey,
    ImportKey,
    SetRotationPolicy,
    SetTags,
    GetPolicy,
    SetPolicy,
    ExplainPolicy,
    InitSecurityDomain,
    JoinSecurityDomain,
    GetSecurityDomain,
  } as unknown as UntypedServiceImplementation;
}

/**
 * The quorum operations (KeyAdmin RPCs) that need `permission`, on a key or key-less:
 * what ExplainPolicy answers for. Mirrors the authorize/gate pairs of the handlers above
 * (test/server/admin-quorum.test.ts holds each one and checks this table).
 */
const QUORUM_OPS_BY_PERMISSION: Record<string, { key: QuorumOperation[]; keyless: QuorumOperation[] }> = {
  create: { key: ['CreateKey'], keyless: [] },
  update: { key: ['RotateKey', 'EnablePurgeProtection', 'DisableProtectedKey'], keyless: ['SetPolicy'] },
  delete: { key: ['DeleteKey'], keyless: [] },
  recover: { key: ['RecoverKey'], keyless: [] },
  purge: { key: ['PurgeKey'], keyless: [] },
  import: { key: ['AdoptKey', 'ImportKey'], keyless: [] },
  backup: { key: ['BackupKey'], keyless: [] },
  restore: { key: [], keyless: ['RestoreKey', 'InitSecurityDomain', 'JoinSecurityDomain'] },
};

function quorumOpsFor(permission: string, keyName: string | undefined): QuorumOperation[] {
  const row = Object.hasOwn(QUORUM_OPS_BY_PERMISSION, permission)
    ? QUORUM_OPS_BY_PERMISSION[permission]
    : undefined;
  if (!row) return [];
  return keyName === undefined ? row.keyless : row.key;
}

/** KeyAdmin ready for HyokServer.start({ services: [...] }). */
export function adminExtraService(opts: AdminServiceOptions): ExtraService {
  return {
    name: ADMIN_SERVICE_NAME,
    definition: adminServiceDefinition(),
    implementation: createAdminService(opts),
    protoFile: ADMIN_PROTO_FILE,
  };
}
