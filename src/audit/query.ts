// Reading the audit log for people: `hyokd audit tail` and `hyokd audit search`.
// These read files as they are and do not verify the chain (verify.ts does); lines that
// are not records (a partial last line, damage) are skipped, and a file's data ends at
// its first NUL byte (the writer's zero-filled space, files.ts).

import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileExtent, listAuditDir, parseRecordLine } from './files.js';
import type { AuditRecord } from './record.js';

async function* recordsOf(dir: string, name: string): AsyncGenerator<AuditRecord> {
  const rl = createInterface({ input: createReadStream(join(dir, name)), crlfDelay: Infinity });
  for await (const line of rl) {
    if (line.includes('\0')) break;
    const r = parseRecordLine(line);
    if (r) yield r;
  }
  rl.close();
}

/** The last `n` records, oldest first. */
export async function* tailAudit(dir: string, n: number): AsyncGenerator<AuditRecord> {
  if (!Number.isSafeInteger(n) || n <= 0) return;
  const { files } = await listAuditDir(dir);
  const out: AuditRecord[][] = [];
  let have = 0;
  for (let i = files.length - 1; i >= 0 && have < n; i--) {
    const data = await readFile(join(dir, files[i]!.name));
    const recs = data
      .subarray(0, fileExtent(data).complete)
      .toString('utf8')
      .split('\n')
      .map((l) => parseRecordLine(l))
      .filter((r): r is AuditRecord => r !== null);
    const take = recs.slice(Math.max(0, recs.length - (n - have)));
    out.unshift(take);
    have += take.length;
  }
  for (const chunk of out) yield* chunk;
}

export interface AuditSearch {
  /** Key name (exact). */
  key?: string;
  /** Certificate fingerprint or SAN identity (exact). */
  identity?: string;
  /** hyokd request id, or an upstream request id in the caller context (exact). */
  requestId?: string;
  /** Record type: request, quorum, key-job, reload, start, … */
  type?: string;
  since?: Date;
  until?: Date;
}

function field(r: AuditRecord, name: string): unknown {
  return (r as Record<string, unknown>)[name];
}

export function matchesSearch(r: AuditRecord, q: AuditSearch): boolean {
  if (q.type !== undefined && r.type !== q.type) return false;
  const t = Date.parse(r.ts);
  if (q.since && !(t >= q.since.getTime())) return false;
  if (q.until && !(t <= q.until.getTime())) return false;
  if (q.key !== undefined) {
    const key = field(r, 'key') as { name?: unknown } | undefined;
    if (!key || key.name !== q.key) return false;
  }
  if (q.identity !== undefined) {
    const id = field(r, 'identity') as { fingerprint?: unknown; san?: unknown } | null | undefined;
    if (!id || (id.fingerprint !== q.identity && id.san !== q.identity)) return false;
  }
  if (q.requestId !== undefined) {
    const ctx = field(r, 'context') as Record<string, unknown> | undefined;
    const upstream = ctx ? [ctx.upstreamRequestId, ctx.requestId] : [];
    if (field(r, 'requestId') !== q.requestId && !upstream.includes(q.requestId)) return false;
  }
  return true;
}

/** Matching records, oldest first, streamed file by file. */
export async function* searchAudit(dir: string, q: AuditSearch): AsyncGenerator<AuditRecord> {
  const { files } = await listAuditDir(dir);
  for (let i = 0; i < files.length; i++) {
    // A file holds records from its creation until the next file's creation.
    const next = files[i + 1];
    if (q.since && next && next.created.getTime() < q.since.getTime() - 1000) continue;
    if (q.until && files[i]!.created.getTime() > q.until.getTime()) break;
    for await (const r of recordsOf(dir, files[i]!.name)) {
      if (matchesSearch(r, q)) yield r;
    }
  }
}

const str = (v: unknown): string => (v === undefined || v === null ? '-' : String(v));

/** One human-readable line per record. */
export function formatAuditRecord(r: AuditRecord): string {
  const head = `${r.ts} #${r.seq} ${r.type}`;
  const f = (n: string): unknown => field(r, n);
  switch (r.type) {
    case 'request': {
      const id = f('identity') as { san?: unknown } | null;
      const key = f('key') as { name?: unknown; version?: unknown } | undefined;
      const d = f('decision') as { allowed?: unknown; rule?: unknown } | undefined;
      const res = f('result') as { code?: unknown } | undefined;
      const keyText = key
        ? `${str(key.name)}${key.version !== undefined ? '@' + str(key.version) : ''}`
        : '-';
      return `${head} ${str(f('plane'))} ${str(f('op'))} key=${keyText} by=${str(id?.san)} ${d?.allowed ? 'allow' : 'deny'}(${str(d?.rule)}) ${str(res?.code)} ${str(f('latencyMs'))}ms peer=${str(f('peer'))} req=${str(f('requestId'))}`;
    }
    case 'quorum':
      return `${head} ${str(f('action'))} ${str(f('op'))} quorum=${str(f('quorumId'))} ${str(f('approvals'))}/${str(f('required'))}`;
    case 'key-job': {
      const key = f('key') as { name?: unknown; version?: unknown } | undefined;
      return `${head} ${str(f('job'))} ${str(key?.name)}@${str(key?.version)} ${str(f('status'))}${f('code') ? ' ' + str(f('code')) : ''}`;
    }
    case 'reload':
      return `${head} ${str(f('what'))} ${f('ok') ? 'ok' : 'failed'} ${str(f('digest'))}`;
    case 'checkpoint':
      return `${head} key=${str(f('keyId'))} head=${str((f('head') as { seq?: unknown } | undefined)?.seq)} ${str(f('reason'))}`;
    case 'key':
      return `${head} ${str(f('keyId'))} ${str(f('reason'))}`;
    case 'start':
    case 'resume': {
      const from = f('from') as { seq?: unknown; file?: unknown } | null;
      const torn = f('torn') as { length?: unknown } | null;
      return `${head} after=${from ? `#${str(from.seq)}` : 'genesis'}${torn ? ` torn=${str(torn.length)}B` : ''}${r.type === 'start' ? (f('clean') ? ' clean' : ' unclean') : ''}`;
    }
    case 'rotate':
      return `${head} next=${str(f('nextFile'))}`;
    default:
      return head;
  }
}
