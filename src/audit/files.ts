// Audit file names and reading the files back.
//
// A file is named `audit-<startSeq, 20 digits>-<UTC yyyymmddThhmmssZ>.jsonl`: listing
// sorts by the first sequence number it holds, so a verifier can tell order and gaps
// from names alone and then check them against the contents. A `-<n>` suffix before
// `.jsonl` separates two files with the same start: that happens only when a file holds
// nothing but a partial line (a crash during its first write) and the writer restarts
// within the same second.

import { basename } from 'node:path';
import { join } from 'node:path';
import { AuditCodes, AuditError } from './errors.js';
import { nodeAuditFs, type AuditFs } from './audit-fs.js';
import { sha256Hex, recordHash } from './canonical.js';
import type { AuditRecord, ChainPoint, TornTail } from './record.js';

const NAME = /^audit-(\d{20})-(\d{8}T\d{6}Z)(?:-(\d{1,4}))?\.jsonl$/;

export interface AuditFileName {
  name: string;
  startSeq: number;
  /** When the file was created, from its name. */
  created: Date;
  /** The `-<n>` suffix, 0 without one. */
  attempt: number;
}

export function auditFileName(startSeq: number, now: Date, attempt = 0): string {
  const ts = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  return `audit-${String(startSeq).padStart(20, '0')}-${ts}${attempt > 0 ? `-${attempt}` : ''}.jsonl`;
}

export function parseAuditFileName(name: string): AuditFileName | null {
  const m = NAME.exec(basename(name));
  if (!m) return null;
  const t = m[2]!;
  const created = new Date(
    `${t.slice(0, 4)}-${t.slice(4, 6)}-${t.slice(6, 8)}T${t.slice(9, 11)}:${t.slice(11, 13)}:${t.slice(13, 15)}Z`,
  );
  const startSeq = Number(m[1]);
  if (!Number.isSafeInteger(startSeq) || Number.isNaN(created.getTime())) return null;
  return { name, startSeq, created, attempt: m[3] ? Number(m[3]) : 0 };
}

/** Audit files in `dir` sorted by start seq, and every other entry. */
export async function listAuditDir(
  dir: string,
  afs: AuditFs = nodeAuditFs,
): Promise<{ files: AuditFileName[]; others: string[] }> {
  const files: AuditFileName[] = [];
  const others: string[] = [];
  for (const entry of await afs.readdir(dir)) {
    const parsed = parseAuditFileName(entry);
    if (parsed) files.push(parsed);
    else others.push(entry);
  }
  files.sort(
    (a, b) => a.startSeq - b.startSeq || a.created.getTime() - b.created.getTime() || a.attempt - b.attempt,
  );
  return { files, others: others.sort() };
}

/** Parse one line into a record with the required chain fields, or null. */
export function parseRecordLine(line: string): AuditRecord | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
  const r = v as Record<string, unknown>;
  if (
    !Number.isSafeInteger(r.seq) ||
    (r.seq as number) < 0 ||
    typeof r.ts !== 'string' ||
    typeof r.prev !== 'string' ||
    typeof r.hash !== 'string' ||
    typeof r.type !== 'string'
  ) {
    return null;
  }
  return r as AuditRecord;
}

export interface FileTail {
  /** The last complete record, or null when the file holds none. */
  last: AuditRecord | null;
  /** Bytes after the last newline: a write that did not finish. */
  torn: TornTail | null;
  size: number;
}

/**
 * Read the end of a file: the last complete line and any partial line after it.
 * Reads backwards in growing chunks, so a large file costs only its tail.
 */
export async function readFileTail(dir: string, name: string, afs: AuditFs = nodeAuditFs): Promise<FileTail> {
  const path = join(dir, name);
  const { size } = await afs.stat(path);
  if (size === 0) return { last: null, torn: null, size };
  const fd = await afs.openRead(path);
  try {
    let chunk = Math.min(size, 64 * 1024);
    for (;;) {
      const start = size - chunk;
      const buf = Buffer.alloc(chunk);
      let got = 0;
      while (got < chunk) {
        const n = await afs.read(fd, buf.subarray(got), start + got);
        if (n === 0) break;
        got += n;
      }
      const data = buf.subarray(0, got);
      const lastNl = data.lastIndexOf(0x0a);
      let torn: TornTail | null = null;
      if (lastNl < data.length - 1) {
        if (lastNl < 0 && start > 0) {
          chunk = Math.min(size, chunk * 4);
          continue;
        }
        const partial = data.subarray(lastNl + 1);
        torn = { file: name, offset: start + lastNl + 1, length: partial.length, sha256: sha256Hex(partial) };
      }
      if (lastNl < 0) return { last: null, torn, size };
      const prevNl = data.lastIndexOf(0x0a, lastNl - 1);
      if (prevNl < 0 && start > 0) {
        chunk = Math.min(size, chunk * 4);
        continue;
      }
      const line = data.subarray(prevNl + 1, lastNl).toString('utf8');
      const last = parseRecordLine(line);
      if (!last || recordHash(last) !== last.hash) {
        throw new AuditError(
          AuditCodes.TAIL_CORRUPT,
          'TAIL_CORRUPT',
          `audit file ${name}: the last complete line is not a valid record`,
        );
      }
      return { last, torn, size };
    }
  } finally {
    await afs.close(fd).catch(() => undefined);
  }
}

export interface DiskHead {
  /** The last complete record on disk and its file, or null for an empty log. */
  point: ChainPoint | null;
  lastRecord: AuditRecord | null;
  /** A partial line at the end of the newest file that holds anything. */
  torn: TornTail | null;
}

/** Find where the chain on disk ends: the newest complete record, skipping empty files. */
export async function findDiskHead(dir: string, afs: AuditFs = nodeAuditFs): Promise<DiskHead> {
  const { files } = await listAuditDir(dir, afs);
  let torn: TornTail | null = null;
  for (let i = files.length - 1; i >= 0; i--) {
    const tail = await readFileTail(dir, files[i]!.name, afs);
    // Only the newest partial line matters: older files were continued past it already.
    if (tail.torn && !torn) torn = tail.torn;
    if (tail.last) {
      return {
        point: { file: files[i]!.name, seq: tail.last.seq, hash: tail.last.hash },
        lastRecord: tail.last,
        torn,
      };
    }
  }
  return { point: null, lastRecord: null, torn };
}
