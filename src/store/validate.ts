// Argument checks shared by every store implementation. The SQLite schema repeats the
// important ones as CHECK constraints and triggers, so a bug above cannot slip past.

import { StoreCodes, StoreError } from './errors.js';
import {
  KEY_KINDS,
  KEY_NAME_PATTERN,
  KEY_OPERATIONS,
  KEY_ORIGINS,
  MAX_RETENTION_DAYS,
  MIN_RETENTION_DAYS,
  type NewKey,
  type NewVersion,
  type RotationPolicy,
  type Tags,
} from './types.js';

const HEX = /^(?:[0-9a-f]{2})+$/;
const MAX_TAGS = 64;

function invalid(message: string): never {
  throw new StoreError(StoreCodes.INVALID_ARGUMENT, message);
}

export function checkKeyName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !KEY_NAME_PATTERN.test(name)) {
    invalid(`key name must match ${KEY_NAME_PATTERN.source}`);
  }
}

export function checkRetention(days: unknown): asserts days is number {
  if (
    typeof days !== 'number' ||
    !Number.isInteger(days) ||
    days < MIN_RETENTION_DAYS ||
    days > MAX_RETENTION_DAYS
  ) {
    invalid(`retentionDays must be an integer from ${MIN_RETENTION_DAYS} to ${MAX_RETENTION_DAYS}`);
  }
}

export function checkTags(tags: unknown): asserts tags is Tags {
  if (typeof tags !== 'object' || tags === null || Array.isArray(tags)) invalid('tags must be an object');
  const entries = Object.entries(tags);
  if (entries.length > MAX_TAGS) invalid(`at most ${MAX_TAGS} tags`);
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > 128) invalid('tag names must be 1..128 characters');
    if (typeof v !== 'string' || v.length > 256)
      invalid(`tag "${k}" must be a string of at most 256 characters`);
  }
}

export function checkRotation(r: unknown): asserts r is RotationPolicy {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) invalid('rotation must be an object');
  const { rotationPeriodDays, expiresAt, notifyBeforeDays, ...rest } = r as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) invalid(`unknown rotation field "${extra[0]}"`);
  const posInt = (v: unknown, field: string, max: number): void => {
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
      invalid(`rotation.${field} must be an integer from 1 to ${max}`);
    }
  };
  posInt(rotationPeriodDays, 'rotationPeriodDays', 3650);
  posInt(notifyBeforeDays, 'notifyBeforeDays', 365);
  if (
    expiresAt !== undefined &&
    (typeof expiresAt !== 'number' || !Number.isSafeInteger(expiresAt) || expiresAt < 0)
  ) {
    invalid('rotation.expiresAt must be a time in ms since the epoch');
  }
}

export function checkCkaId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || id.length > 256 || !HEX.test(id)) {
    invalid('ckaId must be lowercase hex of whole bytes (at most 128 bytes)');
  }
}

export function checkNewVersion(v: NewVersion): void {
  checkCkaId(v.ckaId);
  if (typeof v.hsmLabel !== 'string' || v.hsmLabel.length === 0 || v.hsmLabel.length > 255) {
    invalid('hsmLabel must be 1..255 characters');
  }
  if (v.publicKeySpki != null && !Buffer.isBuffer(v.publicKeySpki)) invalid('publicKeySpki must be a Buffer');
  if (v.state !== undefined && v.state !== 'enabled' && v.state !== 'disabled') {
    invalid('version state must be enabled or disabled');
  }
}

export function checkNewKey(k: NewKey): void {
  checkKeyName(k.name);
  if (!(KEY_KINDS as readonly string[]).includes(k.kind))
    invalid(`kind must be one of ${KEY_KINDS.join(', ')}`);
  if (!(KEY_ORIGINS as readonly string[]).includes(k.origin)) {
    invalid(`origin must be one of ${KEY_ORIGINS.join(', ')}`);
  }
  if (!Array.isArray(k.operations) || k.operations.length === 0)
    invalid('operations must be a non-empty list');
  for (const op of k.operations) {
    if (!(KEY_OPERATIONS as readonly string[]).includes(op)) invalid(`unknown operation "${String(op)}"`);
  }
  if (new Set(k.operations).size !== k.operations.length) invalid('operations must not repeat');
  checkRetention(k.retentionDays);
  if (k.tags !== undefined) checkTags(k.tags);
  if (k.rotation !== undefined) checkRotation(k.rotation);
  if (k.state !== undefined && k.state !== 'enabled' && k.state !== 'disabled') {
    invalid('a new key is enabled or disabled');
  }
  if (k.firstVersion !== undefined) checkNewVersion(k.firstVersion);
}
