// `hyokd audit verify | tail | search`: local reads of an audit directory (default
// $HYOKD_AUDIT_DIR, else $HYOKD_HOME/audit). verify exits 1 and names the first bad
// record and the kind of damage; tail and search print one line per record (--json:
// the record itself, one JSON object per line).

import { createPublicKey } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import {
  formatAuditRecord,
  formatVerifyReport,
  searchAudit,
  tailAudit,
  verifyAuditDir,
  type AuditSearch,
  type VerifyOptions,
} from '../../audit/index.js';
import { EXIT_FAILED, UsageError, type CliIo } from './cli-io.js';
import { print, runAction, subcommand } from './command-kit.js';
import { hyokdHome } from './connection.js';
import { collect, parseIntInRange, parseTime, readInputFile } from './parse-input.js';

/** The audit directory: the argument, else $HYOKD_AUDIT_DIR (relative to home), else home/audit. */
export function auditDir(arg: string | undefined, io: CliIo): string {
  if (arg !== undefined) return resolve(io.cwd(), arg);
  const home = hyokdHome(io);
  return resolve(home, io.env.HYOKD_AUDIT_DIR || 'audit');
}

async function requireDir(dir: string): Promise<void> {
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw new UsageError(`DIR: ${dir} is not a directory`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(
      `DIR: cannot open ${dir} (${(e as NodeJS.ErrnoException).code ?? 'EIO'}); pass DIR or set HYOKD_HOME`,
    );
  }
}

const ANCHOR = /^(\d{1,15}):([0-9a-f]{64})$/;

export function registerAuditCommands(program: Command, io: CliIo): void {
  const audit = subcommand(program, 'audit', io).description('read and verify the local audit log');

  // verify
  const verify = subcommand(audit, 'verify', io)
    .description(
      'check the hash chain, file boundaries and checkpoint signatures; exit 1 at the first damage',
    )
    .argument('[dir]', 'audit directory (default $HYOKD_HOME/audit)')
    .option('--trusted-key <file>', 'audit public key (PEM or SPKI DER) to require; repeatable', collect)
    .option(
      '--anchor <seq:hash>',
      'a checkpoint kept elsewhere that must be in the chain; repeatable',
      collect,
    )
    .option('--allow-torn-tail', 'tolerate a partial last line (verifying a live log)')
    .option('--allow-pruned-head', 'the oldest files were removed on purpose (retention)')
    .option('--json', 'print the report as JSON');
  runAction<{
    trustedKey?: string[];
    anchor?: string[];
    allowTornTail?: boolean;
    allowPrunedHead?: boolean;
    json?: boolean;
  }>(verify, io, async ([dirArg], o) => {
    const opts: VerifyOptions = {
      allowTornTail: o.allowTornTail === true,
      allowPrunedHead: o.allowPrunedHead === true,
    };
    if (o.trustedKey) {
      opts.trustedKeys = [];
      for (const f of o.trustedKey) {
        const buf = await readInputFile(f, '--trusted-key', 64 * 1024);
        try {
          const text = buf.toString('latin1');
          const key = text.includes('-----BEGIN ')
            ? createPublicKey(text)
            : createPublicKey({ key: buf, format: 'der', type: 'spki' });
          opts.trustedKeys.push(key.export({ format: 'der', type: 'spki' }));
        } catch {
          throw new UsageError(`--trusted-key: ${f} is not a public key (PEM or SPKI DER)`);
        }
      }
    }
    if (o.anchor) {
      opts.anchors = o.anchor.map((a) => {
        const m = ANCHOR.exec(a);
        if (!m)
          throw new UsageError(`--anchor: expected SEQ:SHA256HEX, got ${JSON.stringify(a.slice(0, 90))}`);
        return { seq: Number(m[1]), hash: m[2]! };
      });
    }
    const dir = auditDir(dirArg, io);
    await requireDir(dir);
    const report = await verifyAuditDir(dir, opts);
    const line = formatVerifyReport(report);
    if (o.json) io.out(JSON.stringify({ dir, ...report }) + '\n');
    else {
      io.out(line + '\n');
      for (const w of report.warnings) io.out(`warning: ${w}\n`);
    }
    if (!report.ok) {
      if (o.json) io.err(line + '\n');
      return EXIT_FAILED;
    }
    return undefined;
  });

  // tail
  const tail = subcommand(audit, 'tail', io)
    .description('print the newest records')
    .argument('[dir]', 'audit directory (default $HYOKD_HOME/audit)')
    .option('-n, --lines <n>', 'how many records', '20')
    .option('--json', 'one JSON record per line');
  runAction<{ lines: string; json?: boolean }>(tail, io, async ([dirArg], o) => {
    const n = parseIntInRange(o.lines, '-n/--lines', 1, 1_000_000);
    const dir = auditDir(dirArg, io);
    await requireDir(dir);
    for await (const r of tailAudit(dir, n)) print(io, o.json, formatAuditRecord(r), r);
  });

  // search
  const search = subcommand(audit, 'search', io)
    .description('print the records that match every filter given')
    .argument('[dir]', 'audit directory (default $HYOKD_HOME/audit)')
    .option('--key <name>', 'key name (exact)')
    .option('--identity <id>', 'caller SAN identity or certificate fingerprint (exact)')
    .option('--request-id <id>', 'hyokd or upstream request id (exact)')
    .option('--type <type>', 'record type: request, quorum, key-job, reload, start, …')
    .option('--since <time>', 'ISO 8601 time or an age like 15m, 2h, 7d')
    .option('--until <time>', 'ISO 8601 time or an age like 15m, 2h, 7d')
    .option('--limit <n>', 'stop after this many records')
    .option('--json', 'one JSON record per line');
  runAction<{
    key?: string;
    identity?: string;
    requestId?: string;
    type?: string;
    since?: string;
    until?: string;
    limit?: string;
    json?: boolean;
  }>(search, io, async ([dirArg], o) => {
    const q: AuditSearch = {};
    const now = new Date();
    for (const [flag, v] of [
      ['--key', o.key],
      ['--identity', o.identity],
      ['--request-id', o.requestId],
      ['--type', o.type],
    ] as const) {
      if (v !== undefined && (v === '' || v.length > 512)) throw new UsageError(`${flag}: 1-512 characters`);
    }
    if (o.key !== undefined) q.key = o.key;
    if (o.identity !== undefined) q.identity = o.identity;
    if (o.requestId !== undefined) q.requestId = o.requestId;
    if (o.type !== undefined) q.type = o.type;
    if (o.since !== undefined) q.since = parseTime(o.since, '--since', now);
    if (o.until !== undefined) q.until = parseTime(o.until, '--until', now);
    if (q.since && q.until && q.since.getTime() > q.until.getTime()) {
      throw new UsageError('--since is after --until');
    }
    const limit = o.limit === undefined ? Infinity : parseIntInRange(o.limit, '--limit', 1, 1_000_000_000);
    const dir = auditDir(dirArg, io);
    await requireDir(dir);
    let n = 0;
    for await (const r of searchAudit(dir, q)) {
      print(io, o.json, formatAuditRecord(r), r);
      if (++n >= limit) break;
    }
    if (n === 0 && !o.json) io.err('no matching records\n');
  });
}
