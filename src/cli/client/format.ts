// Turning proto-loader objects into JSON for --json and into lines for people.
// Bytes become base64, google.protobuf.Timestamp an ISO 8601 string (null when unset),
// the rotation Duration "<seconds>s".

import { KIND_FROM_ENUM, OP_FROM_ENUM } from '../../proto-enums.js';

export interface Timestamp {
  seconds: string | number;
  nanos: number;
}

export function timestampToIso(t: Timestamp | null | undefined): string | null {
  if (!t) return null;
  const s = Number(t.seconds);
  if (!Number.isFinite(s) || (s === 0 && !t.nanos)) return null;
  return new Date(s * 1000 + Math.floor((t.nanos ?? 0) / 1e6)).toISOString();
}

function isTimestampLike(v: object): v is Timestamp {
  const keys = Object.keys(v);
  return keys.length === 2 && keys.includes('seconds') && keys.includes('nanos');
}

/** Recursively converts a decoded message into plain JSON values. */
export function toJson(v: unknown, field = ''): unknown {
  if (v === null || v === undefined) return null;
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (Array.isArray(v)) return v.map((x) => toJson(x));
  if (typeof v === 'object') {
    if (isTimestampLike(v)) {
      if (field === 'rotateAfter') return Number(v.seconds) > 0 ? `${Number(v.seconds)}s` : null;
      return timestampToIso(v);
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = toJson(x, k);
    return out;
  }
  return v;
}

// --- admin Key -----------------------------------------------------------------------------

export interface AdminKeyVersion {
  version: number;
  state: string;
  createdTime: Timestamp | null;
  origin: string;
  publicKeySpki: Buffer;
  hsmObjectId: string;
}

export interface AdminKey {
  name: string;
  kind: string;
  state: string;
  primaryVersion: number;
  versions: AdminKeyVersion[];
  allowedOperations: string[];
  tags: Record<string, string>;
  retentionDays: number;
  purgeProtection: boolean;
  rotationPolicy: { rotateAfter: Timestamp | null; nextRotationTime: Timestamp | null } | null;
  createdTime: Timestamp | null;
  updatedTime: Timestamp | null;
  deletedTime: Timestamp | null;
  scheduledPurgeTime: Timestamp | null;
}

export function kindName(kind: string): string {
  return KIND_FROM_ENUM[kind] ?? kind;
}

function tagText(tags: Record<string, string>): string {
  const e = Object.entries(tags ?? {});
  return e.length ? e.map(([k, v]) => `${k}=${v}`).join(', ') : '-';
}

/** A short one-line summary for lists. */
export function keySummaryLine(k: AdminKey): string {
  return `${k.name}\t${kindName(k.kind)}\t${k.state}\tprimary v${k.primaryVersion}\t${k.versions.length} version(s)\ttags ${tagText(k.tags)}`;
}

/** The full human view of one key. */
export function keyDetailLines(k: AdminKey): string[] {
  const lines = [
    `key:         ${k.name}`,
    `kind:        ${kindName(k.kind)}`,
    `state:       ${k.state}`,
    `primary:     v${k.primaryVersion}`,
    `operations:  ${(k.allowedOperations ?? []).map((o) => OP_FROM_ENUM[o] ?? o).join(', ') || '-'}`,
    `tags:        ${tagText(k.tags)}`,
    `retention:   ${k.retentionDays} days, purge protection ${k.purgeProtection ? 'on' : 'off'}`,
  ];
  const every = k.rotationPolicy?.rotateAfter ? Number(k.rotationPolicy.rotateAfter.seconds) : 0;
  lines.push(
    `rotation:    ${every > 0 ? `every ${formatSeconds(every)}, next ${timestampToIso(k.rotationPolicy?.nextRotationTime) ?? '-'}` : 'manual'}`,
  );
  lines.push(`created:     ${timestampToIso(k.createdTime) ?? '-'}`);
  lines.push(`updated:     ${timestampToIso(k.updatedTime) ?? '-'}`);
  if (k.state === 'DELETED') {
    lines.push(`deleted:     ${timestampToIso(k.deletedTime) ?? '-'}`);
    lines.push(`purge after: ${timestampToIso(k.scheduledPurgeTime) ?? '-'}`);
  }
  lines.push('versions:');
  for (const v of k.versions ?? []) {
    lines.push(
      `  v${v.version}  ${v.state.replace(/^VERSION_/, '')}  ${v.origin}  created ${timestampToIso(v.createdTime) ?? '-'}${v.hsmObjectId ? `  hsm-id ${v.hsmObjectId}` : ''}`,
    );
  }
  return lines;
}

export function formatSeconds(s: number): string {
  if (s % 86400 === 0) return `${s / 86400}d`;
  if (s % 3600 === 0) return `${s / 3600}h`;
  if (s % 60 === 0) return `${s / 60}m`;
  return `${s}s`;
}

// --- data-plane KeyInfo --------------------------------------------------------------------

export interface DataKeyInfo {
  name: string;
  state: string;
  algorithm: string;
  primaryVersion: number;
  versions: { version: number; state: string; createdTime: Timestamp | null; publicKeySpki: Buffer }[];
  publicKeySpki: Buffer;
}

export function dataKeyLines(k: DataKeyInfo): string[] {
  const lines = [
    `key:        ${k.name}`,
    `algorithm:  ${k.algorithm}`,
    `state:      ${k.state}`,
    `primary:    v${k.primaryVersion}`,
  ];
  if (k.publicKeySpki?.length) lines.push(`public key: ${k.publicKeySpki.toString('base64')}`);
  lines.push('versions:');
  for (const v of k.versions ?? []) {
    lines.push(`  v${v.version}  ${v.state}  created ${timestampToIso(v.createdTime) ?? '-'}`);
  }
  return lines;
}
