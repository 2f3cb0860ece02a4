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
import { createHash } from 'node:crypto';
import { recordHash } from './canonical.js';
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

/**
 * Where a file's records end. Records never hold a NUL byte (canonical JSON escapes
 * control characters), so the first NUL ends the data: after it comes the zero-filled
 * space the writer keeps ahead of itself (writer.ts), which a file keeps if the writer
 * did not stop cleanly. Only the last write can have been cut short, and with
 * preallocated space a crash may leave it with holes (blocks that never reached the
 * disk read back as zeros) and later blocks that did. So: the complete lines before the
 * first NUL are the records; anything else that is not a NUL, from the end of the last
 * complete line to the last non-NUL byte, is the partial write (`torn`), declared by the
 * next marker byte for byte; trailing NULs are ignored.
 */
export interface FileExtent {
  /** End (exclusive) of the last complete line before the first NUL: the records are [0, complete). */
  complete: number;
  /** The partial write: bytes after the last complete line up to the last non-NUL byte. */
  torn: { offset: number; length: number } | null;
}

/** The extent of a file held in memory (verify, tail). */
export function fileExtent(data: Buffer): FileExtent {
  const firstNul = data.indexOf(0);
  const dataEnd = firstNul < 0 ? data.length : firstNul;
  const complete = dataEnd === 0 ? 0 : data.lastIndexOf(0x0a, dataEnd - 1) + 1;
  let end = data.length;
  while (end > complete && data[end - 1] === 0) end--;
  return { complete, torn: end > complete ? { offset: complete, length: end - complete } : null };
}

export interface FileTail {
  /** The last complete record, or null when the file holds none. */
  last: AuditRecord | null;
  /** The partial write after it (see FileExtent). */
  torn: TornTail | null;
  size: number;
}

const CHUNK = 1024 * 1024;

async function readAt(afs: AuditFs, fd: number, buf: Buffer, position: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const n = await afs.read(fd, buf.subarray(got), position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** Offset of the first NUL byte in [0, size), or size: a forward scan in 1 MiB reads. */
async function firstNul(afs: AuditFs, fd: number, size: number): Promise<number> {
  const buf = Buffer.allocUnsafe(Math.min(size, CHUNK));
  for (let pos = 0; pos < size;) {
    const got = await readAt(afs, fd, buf.subarray(0, Math.min(buf.length, size - pos)), pos);
    if (got === 0) return pos;
    const i = buf.subarray(0, got).indexOf(0);
    if (i >= 0) return pos + i;
    pos += got;
  }
  return size;
}

/** End (exclusive) of the last non-NUL byte in [from, size): a backward scan. */
async function lastNonNulEnd(afs: AuditFs, fd: number, from: number, size: number): Promise<number> {
  const buf = Buffer.allocUnsafe(Math.min(Math.max(size - from, 1), CHUNK));
  for (let end = size; end > from;) {
    const start = Math.max(from, end - buf.length);
    const got = await readAt(afs, fd, buf.subarray(0, end - start), start);
    for (let i = got - 1; i >= 0; i--) if (buf[i] !== 0) return start + i + 1;
    end = start;
  }
  return from;
}

/** SHA-256 (hex) of the bytes [from, to) of a file. */
async function digestRange(afs: AuditFs, fd: number, from: number, to: number): Promise<string> {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(Math.max(to - from, 1), CHUNK));
  for (let pos = from; pos < to;) {
    const got = await readAt(afs, fd, buf.subarray(0, Math.min(buf.length, to - pos)), pos);
    if (got === 0) break;
    h.update(buf.subarray(0, got));
    pos += got;
  }
  return h.digest('hex');
}

/**
 * Read the end of a file: the last complete record and the partial write after it
 * (FileExtent's rules). The first NUL is found by a forward scan (a hole can only be in
 * the last write, but nothing on disk says where that began); the last line is then
 * read backwards in growing chunks.
 */
export async function readFileTail(dir: string, name: string, afs: AuditFs = nodeAuditFs): Promise<FileTail> {
  const path = join(dir, name);
  const { size } = await afs.stat(path);
  if (size === 0) return { last: null, torn: null, size };
  const fd = await afs.openRead(path);
  try {
    const dataEnd = await firstNul(afs, fd, size);
    let complete = 0;
    let last: AuditRecord | null = null;
    let chunk = Math.min(dataEnd, 64 * 1024);
    while (dataEnd > 0) {
      const start = dataEnd - chunk;
      const data = Buffer.alloc(chunk);
      const got = await readAt(afs, fd, data, start);
      const view = data.subarray(0, got);
      const lastNl = view.lastIndexOf(0x0a);
      if (lastNl < 0) {
        if (start > 0) {
          chunk = Math.min(dataEnd, chunk * 4);
          continue;
        }
        break; // no complete line at all
      }
      const prevNl = lastNl === 0 ? -1 : view.lastIndexOf(0x0a, lastNl - 1);
      if (prevNl < 0 && start > 0) {
        chunk = Math.min(dataEnd, chunk * 4);
        continue;
      }
      complete = start + lastNl + 1;
      last = parseRecordLine(view.subarray(prevNl + 1, lastNl).toString('utf8'));
      if (!last || recordHash(last) !== last.hash) {
        throw new AuditError(
          AuditCodes.TAIL_CORRUPT,
          'TAIL_CORRUPT',
          `audit file ${name}: the last complete line is not a valid record`,
        );
      }
      break;
    }
    const end = await lastNonNulEnd(afs, fd, complete, size);
    const torn: TornTail | null =
      end > complete
        ? {
            file: name,
            offset: complete,
            length: end - complete,
            sha256: await digestRange(afs, fd, complete, end),
          }
        : null;
    return { last, torn, size };
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
