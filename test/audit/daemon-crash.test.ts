// SIGKILL the real daemon under load, restart it on the same home, stop it cleanly:
// the audit chain verifies across the crash (a start marker names where the dead run
// ended), and every call that got a success response has its record, because a
// response leaves only after its record is fsync'd.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@grpc/grpc-js';
import t from 'tap';
import { searchAudit, verifyAuditDir, type AuditRecord } from '../../src/audit/index.js';
import { callUnary } from '../../src/cli/client/grpc-client.js';
import { hyokClient, killDaemon, runCli, startDaemonProcess, type DaemonProcess } from './daemon-process.js';

const home = mkdtempSync(join(tmpdir(), 'hyokd-crash-'));
const auditDir = join(home, 'var', 'audit');
let running: DaemonProcess | null = null;
t.teardown(async () => {
  await killDaemon(running);
  rmSync(home, { recursive: true, force: true });
});

const CALL = { timeoutMs: 10_000 };

interface Done {
  requestId: string;
  op: 'Unwrap' | 'Wrap' | 'BatchUnwrap';
  items: number;
}

async function allRecords(): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const r of searchAudit(auditDir, {})) out.push(r);
  return out;
}

t.test('SIGKILL under load loses no acknowledged record and the chain survives', async (t) => {
  // --- first run: load, then SIGKILL mid-load --------------------------------------
  running = await startDaemonProcess(home);
  const first = running;
  let c: Client = hyokClient(home, first.port);
  const g = await callUnary<{ envelope: Buffer; plaintextDek: Buffer }>(
    c,
    'GenerateDataKey',
    { requestId: 'crash-setup', keyName: 'demo' },
    CALL,
  );

  const succeeded: Done[] = [];
  const failedAfterKill: string[] = [];
  let killed = false;
  let failedBeforeKill = 0;
  let n = 0;
  const worker = async (w: number, op: Done['op']) => {
    for (;;) {
      const requestId = `crash-${op}-${w}-${n++}`;
      try {
        if (op === 'Unwrap') {
          const r = await callUnary<{ plaintextDek: Buffer }>(
            c,
            'Unwrap',
            { requestId, envelope: g.envelope },
            CALL,
          );
          if (!r.plaintextDek.equals(g.plaintextDek)) throw new Error('wrong DEK');
          succeeded.push({ requestId, op, items: 1 });
        } else if (op === 'Wrap') {
          const r = await callUnary<{ envelope: Buffer }>(
            c,
            'Wrap',
            { requestId, keyName: 'demo', plaintextDek: g.plaintextDek },
            CALL,
          );
          if (r.envelope.length === 0) throw new Error('no envelope');
          succeeded.push({ requestId, op, items: 1 });
        } else {
          const items = Array.from({ length: 8 }, () => ({ envelope: g.envelope }));
          const r = await callUnary<{ results: { status: { code: number } }[] }>(
            c,
            'BatchUnwrap',
            { requestId, items },
            CALL,
          );
          if (r.results.length !== 8 || r.results.some((x) => x.status.code !== 0))
            throw new Error('batch item failed');
          succeeded.push({ requestId, op, items: 8 });
        }
      } catch {
        if (!killed) failedBeforeKill++;
        else {
          failedAfterKill.push(requestId);
          return; // the daemon is gone: this worker is done
        }
      }
    }
  };
  const ops: Done['op'][] = ['Unwrap', 'Unwrap', 'Wrap', 'Wrap', 'BatchUnwrap', 'BatchUnwrap'];
  const workers = ops.map((op, w) => worker(w, op));
  // Let the load run, but kill only once every kind of call has succeeded at least once.
  const loadStarted = Date.now();
  while (Date.now() - loadStarted < 1500 || !ops.every((op) => succeeded.some((s) => s.op === op))) {
    if (Date.now() - loadStarted > 20_000) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  killed = true;
  const ackedBeforeKill = succeeded.length;
  first.child.kill('SIGKILL');
  const end = await first.exited;
  await Promise.all(workers);
  c.close();
  t.equal(end.signal, 'SIGKILL', 'the daemon died of SIGKILL');
  t.equal(failedBeforeKill, 0, 'no call failed while the daemon was alive');
  for (const op of new Set(ops)) {
    t.ok(
      succeeded.some((s) => s.op === op),
      `${op} calls succeeded before the kill`,
    );
  }
  t.equal(failedAfterKill.length, ops.length, 'every worker saw the daemon die');
  t.comment(
    `${succeeded.length} successful calls (${ackedBeforeKill} when SIGKILL was sent), ${failedAfterKill.length} in flight at the kill`,
  );
  const lock = join(home, 'var', 'hyokd.lock');
  t.ok(existsSync(lock), 'the dead daemon left its lock behind');
  t.equal(readFileSync(lock, 'utf8').trim(), String(first.pid), 'the stale lock names the dead pid');

  // --- second run on the same home: takes over the lock, recovers the audit tail ------
  running = await startDaemonProcess(home);
  const second = running;
  t.not(second.pid, first.pid);
  t.equal(readFileSync(lock, 'utf8').trim(), String(second.pid), 'the lock now names the new daemon');
  t.notMatch(second.stderr(), /first run/, 'the home is reused, nothing recreated');
  c = hyokClient(home, second.port);
  const u = await callUnary<{ plaintextDek: Buffer }>(
    c,
    'Unwrap',
    { requestId: 'crash-after-restart', envelope: g.envelope },
    CALL,
  );
  t.same(u.plaintextDek, g.plaintextDek, 'the restarted daemon serves');
  c.close();
  second.child.kill('SIGTERM');
  const stop = await second.exited;
  t.same(stop, { code: 0, signal: null }, 'the second run stops cleanly');
  running = null;

  // --- the chain: intact across the crash --------------------------------------------
  // No allowTornTail: a partial line the crash may have left is in the older file and
  // must be declared byte for byte by the start marker; the newest file was closed by a
  // clean stop, so a partial line there would be a real defect.
  const report = await verifyAuditDir(auditDir);
  t.equal(report.ok, true, `verify: ${JSON.stringify(report.firstError ?? null)}`);
  t.ok(report.files >= 2, `the restart opened a new file (${report.files} files)`);

  const records = await allRecords();
  t.equal(records.length, report.records, 'every record was read');
  const starts = records.filter((r) => r.type === 'start');
  t.equal(starts.length, 2, 'one start marker per run');
  const [s1, s2] = starts as [AuditRecord, AuditRecord];
  t.equal(s1.from, null, 'the first run started the chain');
  t.equal(s1.clean, true);
  t.equal(s2.clean, false, 'the second start marker says the previous run did not stop');
  const from = s2.from as { seq: number; hash: string; file: string } | null;
  t.ok(from, 'the second start marker names where the dead run ended');
  t.equal(from!.seq, s2.seq - 1, 'the chain continues right after the last durable record');
  const before = records.find((r) => r.seq === from!.seq)!;
  t.equal(before.hash, from!.hash, 'that record is the one named');
  t.notOk(
    records.some((r) => r.type === 'stop' && r.seq < s2.seq),
    'the killed run wrote no stop record',
  );
  t.comment(`start marker after the crash: from #${from!.seq}, torn ${JSON.stringify(s2.torn ?? null)}`);
  t.ok(
    records.some((r) => r.type === 'stop' && r.seq > s2.seq),
    'the second run wrote its stop record',
  );

  // --- every acknowledged call has its record ----------------------------------------
  const byId = new Map<string, AuditRecord[]>();
  for (const r of records) {
    if (r.type !== 'request') continue;
    const id = r.requestId as string;
    byId.set(id, [...(byId.get(id) ?? []), r]);
  }
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const s of succeeded) {
    const rs = byId.get(s.requestId) ?? [];
    if (rs.length === 0) {
      missing.push(s.requestId);
      continue;
    }
    const r = rs[0]!;
    const res = r.result as { code: string };
    const key = r.key as { name?: string } | undefined;
    const details = r.details as { itemCount?: number } | undefined;
    if (
      rs.length !== 1 ||
      r.op !== s.op ||
      res.code !== 'OK' ||
      key?.name !== 'demo' ||
      r.seq >= s2.seq ||
      (s.op === 'BatchUnwrap' && details?.itemCount !== s.items)
    ) {
      wrong.push(`${s.requestId}: ${JSON.stringify(rs)}`);
    }
  }
  t.same(missing, [], `all ${succeeded.length} acknowledged calls have a record`);
  t.same(wrong, [], 'each is one record of the right call, OK, before the restart marker');
  const after = byId.get('crash-after-restart') ?? [];
  t.equal(after.length, 1, 'the call after the restart is recorded');
  t.ok(after[0] && after[0].seq > s2.seq, 'after the start marker');
  t.equal(byId.get('crash-setup')?.length, 1, 'the setup call is recorded');
  // Calls in flight at the kill may or may not have been recorded (durable, but the
  // answer never left); either is correct, so this is only reported.
  const inflightRecorded = failedAfterKill.filter((id) => byId.has(id)).length;
  t.comment(`${inflightRecorded} of ${failedAfterKill.length} calls in flight at the kill were recorded`);

  // --- and the operator's tool agrees -------------------------------------------------
  const cli = await runCli(home, ['audit', 'verify', auditDir]);
  t.equal(cli.code, 0, `hyokd audit verify exits 0: ${cli.stdout}${cli.stderr}`);
  t.match(cli.stdout, new RegExp(`^OK: ${report.records} records`));
});
