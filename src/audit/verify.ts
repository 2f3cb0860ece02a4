// Verification of an audit directory, record by record and file by file.
//
// Checked: each record's hash, the `prev` links, `seq` continuity inside and across
// files, that every file boundary is explained (the earlier file is sealed by a
// `rotate` record naming the next file or a `stop` record, or the next file starts with
// a `start`/`resume` marker that names exactly where the chain ended and any partial
// line left there), checkpoint signatures against the public keys recorded in the chain
// (optionally against a set of trusted keys), and optional external anchors (checkpoints
// mirrored to the operational log). Verification stops at the first problem and names
// it; the kinds are listed in `VerifyErrorKind`.
//
// A file's records are its complete lines before the first NUL byte; trailing NULs are
// space the writer reserved and are ignored (files.ts, FileExtent). Any other bytes
// after the last complete line are a partial write. In the newest file that is a crash
// the writer has not recovered from yet (or a write in progress): 'torn-line', unless
// `allowTornTail` (verifying a live log). Partial writes in older files are fine only
// when the next marker declares them byte for byte (offset, length, SHA-256).
//
// What the chain alone cannot show: removal of the newest records or files by someone
// with write access before the next start (nothing later refers to them). Compare with
// externally kept checkpoints through `anchors` for that.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { GENESIS_PREV, recordHash, sha256Hex } from './canonical.js';
import { fileExtent, listAuditDir, parseRecordLine } from './files.js';
import type { AuditRecord, ChainPoint, TornTail } from './record.js';
import { keyIdForSpki, publicKeyFromSpki, verifyCheckpointSignature } from './signer.js';

export type VerifyErrorKind =
  /** A record's content does not match its hash, a link is broken, or a line is not a record. */
  | 'modified'
  /** Records are missing from inside a file (a seq gap). */
  | 'deleted'
  /** Records or files are out of order. */
  | 'reordered'
  /** A file lost its end: it is not sealed and nothing declares where it ended. */
  | 'truncated'
  /** A file that does not belong: wrong name, or a sequence that overlaps the chain. */
  | 'foreign-file'
  /** A checkpoint signature does not verify, or names an unknown key. */
  | 'bad-signature'
  /** A whole file is missing (named by a rotate record or marker, or the chain's start). */
  | 'missing-file'
  /** A partial line not declared by any marker. */
  | 'torn-line'
  /** A file's name does not match the first sequence number it holds. */
  | 'misnamed'
  /** A key record's key is not among `trustedKeys`. */
  | 'untrusted-key'
  /** A file cannot be read. */
  | 'unreadable';

export interface VerifyError {
  file: string | null;
  /** 1-based line number within `file`. */
  line: number | null;
  seq: number | null;
  kind: VerifyErrorKind;
  message: string;
}

export interface VerifyOptions {
  /** SPKI DER of the audit keys to trust; without it any key recorded in the chain is accepted. */
  trustedKeys?: Buffer[];
  /** Tolerate a partial line at the end of the newest file (a live log). */
  allowTornTail?: boolean;
  /** The oldest files were removed on purpose (retention): the chain need not start at seq 0. */
  allowPrunedHead?: boolean;
  /** Checkpoints kept elsewhere (e.g. from the operational log): each must be in the chain. */
  anchors?: { seq: number; hash: string }[];
}

export interface VerifyReport {
  ok: boolean;
  records: number;
  files: number;
  checkpoints: number;
  /** Key ids of the audit keys seen in `key` records. */
  keys: string[];
  head: ChainPoint | null;
  warnings: string[];
  firstError?: VerifyError;
}

class Stop extends Error {
  constructor(readonly detail: VerifyError) {
    super(detail.message);
  }
}

interface FileEnd {
  name: string;
  last: AuditRecord;
  /** The last record that is not a checkpoint: says how the file was sealed. */
  lastNonCheckpoint: AuditRecord;
  lines: number;
}

const MARKERS = new Set(['start', 'resume']);

/** The partial write of a file (FileExtent), as markers declare it. */
function tornOf(file: string, data: Buffer, t: { offset: number; length: number } | null): TornTail | null {
  if (!t) return null;
  return {
    file,
    offset: t.offset,
    length: t.length,
    sha256: sha256Hex(data.subarray(t.offset, t.offset + t.length)),
  };
}

function sameTorn(a: TornTail | null | undefined, b: unknown): boolean {
  if (!a || !b || typeof b !== 'object') return !a && !b;
  const t = b as Record<string, unknown>;
  return t.file === a.file && t.offset === a.offset && t.length === a.length && t.sha256 === a.sha256;
}

function asPoint(v: unknown): ChainPoint | null {
  if (!v || typeof v !== 'object') return null;
  const p = v as Record<string, unknown>;
  return typeof p.file === 'string' && Number.isSafeInteger(p.seq) && typeof p.hash === 'string'
    ? { file: p.file, seq: p.seq as number, hash: p.hash }
    : null;
}

export async function verifyAuditDir(dir: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const report: VerifyReport = {
    ok: true,
    records: 0,
    files: 0,
    checkpoints: 0,
    keys: [],
    head: null,
    warnings: [],
  };
  const keys = new Map<string, KeyObject>();
  const trusted = opts.trustedKeys ? new Set(opts.trustedKeys.map((k) => keyIdForSpki(k))) : null;
  const names = new Set<string>();
  let sawKeyRecord = false;
  for (const spki of opts.trustedKeys ?? []) keys.set(keyIdForSpki(spki), publicKeyFromSpki(spki));
  const anchors = new Map((opts.anchors ?? []).map((a) => [a.seq, a.hash]));
  const fail = (
    file: string | null,
    line: number | null,
    seq: number | null,
    kind: VerifyErrorKind,
    message: string,
  ): never => {
    throw new Stop({ file, line, seq, kind, message });
  };

  try {
    let listing;
    try {
      listing = await listAuditDir(dir);
    } catch (err) {
      return fail(
        null,
        null,
        null,
        'unreadable',
        `cannot list the audit directory (${(err as { code?: string }).code ?? 'error'})`,
      );
    }
    const { files } = listing;
    // A dedicated file system's lost+found is the only other entry tolerated.
    const others = listing.others.filter((n) => n !== 'lost+found');
    if (others.length > 0) fail(others[0]!, null, null, 'foreign-file', `not an audit file: ${others[0]}`);
    for (const f of files) names.add(f.name);

    let prevEnd: FileEnd | null = null;
    /** A partial line seen after the last complete record: the next marker must declare it. */
    let openTorn: TornTail | null = null;

    for (const f of files) {
      report.files++;
      let data: Buffer;
      try {
        data = await readFile(join(dir, f.name));
      } catch (err) {
        return fail(
          f.name,
          null,
          null,
          'unreadable',
          `cannot read (${(err as { code?: string }).code ?? 'error'})`,
        );
      }
      const extent = fileExtent(data);
      const torn = tornOf(f.name, data, extent.torn);
      const lines =
        extent.complete === 0
          ? []
          : data
              .subarray(0, extent.complete - 1)
              .toString('utf8')
              .split('\n');
      if (lines.length === 0) {
        if (torn) {
          if (openTorn)
            fail(openTorn.file, null, null, 'torn-line', 'partial line not declared by any marker');
          openTorn = torn;
        } else {
          report.warnings.push(`${f.name}: empty file`);
        }
        continue;
      }
      const recs = lines.map((l) => parseRecordLine(l));
      let lastNonCheckpoint: AuditRecord | null = null;

      for (let i = 0; i < recs.length; i++) {
        const line = i + 1;
        const r = recs[i];
        if (!r) fail(f.name, line, null, 'modified', 'line is not an audit record');
        const rec = r!;
        if (recordHash(rec) !== rec.hash)
          fail(f.name, line, rec.seq, 'modified', 'record does not match its hash');

        if (i === 0) {
          checkBoundary(f.name, rec, prevEnd, openTorn, (seq) => recs.some((x) => x?.seq === seq));
          openTorn = null;
          if (rec.seq !== f.startSeq)
            fail(
              f.name,
              line,
              rec.seq,
              'misnamed',
              `file name says ${f.startSeq}, first record is ${rec.seq}`,
            );
        } else {
          const head = report.head!;
          const expected = head.seq + 1;
          if (rec.seq > expected) {
            const later = recs.slice(i + 1).some((x) => x?.seq === expected);
            fail(
              f.name,
              line,
              rec.seq,
              later ? 'reordered' : 'deleted',
              later ? `seq ${expected} appears later` : `seq ${expected}..${rec.seq - 1} missing`,
            );
          }
          if (rec.seq < expected)
            fail(f.name, line, rec.seq, 'reordered', `seq ${rec.seq} after ${head.seq}`);
          if (rec.prev !== head.hash)
            fail(f.name, line, rec.seq, 'modified', 'prev does not match the previous record');
        }
        if (MARKERS.has(rec.type) && i !== 0)
          fail(f.name, line, rec.seq, 'modified', `${rec.type} marker inside a file`);
        checkRecord(f.name, line, rec);
        const anchored = anchors.get(rec.seq);
        if (anchored !== undefined && anchored !== rec.hash)
          fail(f.name, line, rec.seq, 'modified', 'record differs from an external anchor');
        anchors.delete(rec.seq);
        if (rec.type !== 'checkpoint') lastNonCheckpoint = rec;
        report.head = { file: f.name, seq: rec.seq, hash: rec.hash };
        report.records++;
      }
      const lastRec = recs[recs.length - 1]!;
      prevEnd = {
        name: f.name,
        last: lastRec,
        lastNonCheckpoint: lastNonCheckpoint ?? lastRec,
        lines: recs.length,
      };
      openTorn = torn;
    }

    if (openTorn && !opts.allowTornTail) {
      fail(
        openTorn.file,
        null,
        null,
        'torn-line',
        `partial last line (${openTorn.length} bytes at offset ${openTorn.offset}): the writer has not recovered from a crash`,
      );
    }
    if (openTorn) report.warnings.push(`${openTorn.file}: partial last line (live log?)`);
    if (
      prevEnd &&
      prevEnd.lastNonCheckpoint.type === 'rotate' &&
      !names.has(String(prevEnd.lastNonCheckpoint.nextFile))
    ) {
      report.warnings.push(
        `${prevEnd.name}: rotated; ${String(prevEnd.lastNonCheckpoint.nextFile)} not created yet`,
      );
    }
    for (const [seq] of anchors) {
      if (report.head && seq > report.head.seq)
        fail(null, null, seq, 'truncated', `anchor seq ${seq} is beyond the end of the chain`);
      report.warnings.push(`anchor seq ${seq} is before the oldest record`);
    }
  } catch (err) {
    if (!(err instanceof Stop)) throw err;
    report.ok = false;
    report.firstError = err.detail;
  }
  report.keys = [...keys.keys()];
  return report;

  function checkBoundary(
    name: string,
    r: AuditRecord,
    prev: FileEnd | null,
    openTorn: TornTail | null,
    fileHas: (seq: number) => boolean,
  ): void {
    const gap = (): never => {
      const expected = prev!.last.seq + 1;
      return fileHas(expected)
        ? fail(name, 1, r.seq, 'reordered', `seq ${expected} appears later`)
        : fail(name, 1, r.seq, 'deleted', `seq ${expected}..${r.seq - 1} missing`);
    };
    const isMarker = MARKERS.has(r.type);
    if (!prev) {
      if (openTorn) fail(openTorn.file, null, null, 'torn-line', 'partial line not declared by any marker');
      if (r.seq !== 0 || r.prev !== GENESIS_PREV) {
        if (!opts.allowPrunedHead)
          fail(
            name,
            1,
            r.seq,
            'missing-file',
            `the chain starts at seq ${r.seq}, not 0: earlier files are missing`,
          );
        report.warnings.push(`chain starts at seq ${r.seq} (pruned)`);
      }
      return;
    }
    const last = prev.last;
    if (r.seq <= last.seq)
      fail(name, 1, r.seq, 'foreign-file', `seq ${r.seq} overlaps ${prev.name} (ends at ${last.seq})`);
    if (isMarker) {
      const from = asPoint(r.from);
      if (!from) fail(name, 1, r.seq, 'modified', `${r.type} marker without a previous point`);
      if (from!.seq !== last.seq || from!.hash !== last.hash) {
        if (from!.seq > last.seq) {
          const kind = from!.file === prev.name ? 'truncated' : 'missing-file';
          fail(
            name,
            1,
            r.seq,
            kind,
            `${r.type} marker says the chain ended at seq ${from!.seq} in ${from!.file}; found seq ${last.seq} in ${prev.name}`,
          );
        }
        fail(name, 1, r.seq, 'modified', `${r.type} marker does not match the end of ${prev.name}`);
      }
      if (!sameTorn(openTorn, r.torn)) {
        if (openTorn)
          fail(openTorn.file, null, null, 'torn-line', `partial line not declared by the ${r.type} marker`);
        fail(name, 1, r.seq, 'truncated', `${r.type} marker declares a partial line that is gone`);
      }
      if (from!.file !== prev.name) {
        fail(
          prev.name,
          null,
          null,
          'misnamed',
          `the ${r.type} marker in ${name} calls this file ${from!.file}`,
        );
      }
      const acked = asPoint(r.lastAcked);
      if (acked && acked.seq > from!.seq)
        fail(name, 1, r.seq, 'truncated', `acknowledged records up to seq ${acked.seq} were lost`);
    } else {
      if (openTorn)
        fail(
          openTorn.file,
          null,
          null,
          'truncated',
          'file ends in a partial line and the next file does not declare it',
        );
      const seal = prev.lastNonCheckpoint;
      if (seal.type === 'rotate') {
        if (seal.nextFile !== name) {
          const next = String(seal.nextFile);
          fail(
            next,
            null,
            null,
            names.has(next) ? 'reordered' : 'missing-file',
            `${prev.name} rotated to ${next}, found ${name}`,
          );
        }
        if (r.seq !== last.seq + 1) gap();
      } else if (seal.type === 'stop') {
        fail(
          name,
          1,
          r.seq,
          'missing-file',
          `${prev.name} ends with a stop record but ${name} does not start a run`,
        );
      } else {
        fail(
          prev.name,
          prev.lines,
          last.seq,
          'truncated',
          `${prev.name} is not sealed and ${name} does not say where the chain ended`,
        );
      }
    }
    if (r.seq !== last.seq + 1) gap();
    if (r.prev !== last.hash)
      fail(name, 1, r.seq, 'modified', 'prev does not match the end of the previous file');
  }

  function checkRecord(name: string, line: number, r: AuditRecord): void {
    if (r.type === 'key') {
      let spki: Buffer;
      let key: KeyObject;
      try {
        spki = Buffer.from(String(r.spki), 'base64');
        key = publicKeyFromSpki(spki);
      } catch {
        return fail(name, line, r.seq, 'modified', 'key record holds no P-256 public key');
      }
      if (keyIdForSpki(spki) !== r.keyId)
        fail(name, line, r.seq, 'modified', 'key id does not match the public key');
      if (trusted && !trusted.has(r.keyId as string))
        fail(name, line, r.seq, 'untrusted-key', `audit key ${String(r.keyId)} is not trusted`);
      keys.set(r.keyId as string, key);
      sawKeyRecord = true;
    } else if (r.type === 'checkpoint') {
      const head = r.head as { seq?: unknown; hash?: unknown } | undefined;
      if (!head || head.seq !== r.seq - 1 || head.hash !== r.prev)
        fail(name, line, r.seq, 'modified', 'checkpoint head is not the previous record');
      const key = keys.get(String(r.keyId));
      if (!key && opts.allowPrunedHead && !sawKeyRecord) {
        // The key record went with the pruned files; pass `trustedKeys` to check these.
        report.warnings.push(
          `seq ${r.seq}: checkpoint by ${String(r.keyId)} not checked (key record pruned)`,
        );
        return;
      }
      if (!key)
        fail(name, line, r.seq, 'bad-signature', `checkpoint signed by unknown key ${String(r.keyId)}`);
      const sig = Buffer.from(typeof r.sig === 'string' ? r.sig : '', 'base64');
      if (!verifyCheckpointSignature(key!, String(r.keyId), r.seq - 1, r.prev, sig)) {
        fail(name, line, r.seq, 'bad-signature', 'checkpoint signature does not verify');
      }
      report.checkpoints++;
    }
  }
}

/** One line for `hyokd audit verify`. */
export function formatVerifyReport(r: VerifyReport): string {
  const counts = `${r.records} records, ${r.files} files, ${r.checkpoints} checkpoints`;
  if (r.ok) return `OK: ${counts}${r.head ? `, head #${r.head.seq} ${r.head.hash.slice(0, 16)}` : ''}`;
  const e = r.firstError!;
  const where = [e.file, e.line !== null ? `line ${e.line}` : null, e.seq !== null ? `seq ${e.seq}` : null]
    .filter(Boolean)
    .join(' ');
  return `FAILED ${e.kind}${where ? ` at ${where}` : ''}: ${e.message} (${counts} checked)`;
}
