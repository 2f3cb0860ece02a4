// A real daemon whose audit log cannot be written fails closed: data-plane calls get
// UNAVAILABLE with reason AUDIT_UNAVAILABLE and no DEK, grpc health says NOT_SERVING,
// /readyz answers 503; once the log is writable again the daemon resumes by itself
// with a `resume` marker and the chain verifies.
//
// How the disk is made "full" for a root process (root ignores permission bits, and a
// renamed directory would not stop writes to the file the daemon already holds open):
// the daemon's RLIMIT_FSIZE is lowered to 0 with prlimit(1). Every write to a regular
// file then fails in the kernel with EFBIG (Node ignores SIGXFSZ), whichever file or
// descriptor it goes to, and raising the limit again is the disk being freed.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@grpc/grpc-js';
import t from 'tap';
import { searchAudit, verifyAuditDir, type AuditRecord } from '../../src/audit/index.js';
import { CallError, callUnary } from '../../src/cli/client/grpc-client.js';
import {
  healthStatus,
  hyokClient,
  killDaemon,
  runCli,
  startDaemonProcess,
  waitFor,
  type DaemonProcess,
} from './daemon-process.js';

const home = mkdtempSync(join(tmpdir(), 'hyokd-failclosed-'));
const auditDir = join(home, 'var', 'audit');
let running: DaemonProcess | null = null;
t.teardown(async () => {
  await killDaemon(running);
  rmSync(home, { recursive: true, force: true });
});

const CALL = { timeoutMs: 10_000 };

function havePrlimit(): boolean {
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Sets the soft file-size limit of a running process: a number of bytes or 'unlimited'. */
function setFileSizeLimit(pid: number, soft: number | 'unlimited'): void {
  execFileSync('prlimit', ['--pid', String(pid), `--fsize=${soft}:unlimited`], { stdio: 'ignore' });
}

async function readyz(d: DaemonProcess): Promise<{ status: number; body: string }> {
  const r = await fetch(`${d.metricsBase}/readyz`);
  return { status: r.status, body: await r.text() };
}

async function metric(d: DaemonProcess, name: string): Promise<number | null> {
  const text = await (await fetch(`${d.metricsBase}/metrics`)).text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

async function failure(p: Promise<unknown>): Promise<CallError | 'succeeded'> {
  try {
    await p;
    return 'succeeded';
  } catch (e) {
    if (e instanceof CallError) return e;
    throw e;
  }
}

t.test(
  'an unwritable audit log fails closed and recovers by itself',
  { skip: !havePrlimit() && 'prlimit(1) is not installed' },
  async (t) => {
    running = await startDaemonProcess(home);
    const d = running;
    const c: Client = hyokClient(home, d.port);
    t.teardown(() => c.close());
    const g = await callUnary<{ envelope: Buffer; plaintextDek: Buffer }>(
      c,
      'GenerateDataKey',
      { requestId: 'fc-setup', keyName: 'demo' },
      CALL,
    );
    const before = await callUnary<{ plaintextDek: Buffer }>(
      c,
      'Unwrap',
      { requestId: 'fc-before', envelope: g.envelope },
      CALL,
    );
    t.same(before.plaintextDek, g.plaintextDek, 'serving before the fault');
    t.equal(await healthStatus(home, d.port), 'SERVING');
    t.equal((await readyz(d)).status, 200);
    t.equal(await metric(d, 'hyokd_audit_healthy'), 1);

    // --- the disk fills up ---------------------------------------------------------------
    setFileSizeLimit(d.pid, 0);
    let restored = false;
    t.teardown(() => {
      if (!restored && d.child.exitCode === null) setFileSizeLimit(d.pid, 'unlimited');
    });

    const refused: string[] = [];
    const e1 = await failure(
      callUnary(c, 'Unwrap', { requestId: 'fc-outage-unwrap-1', envelope: g.envelope }, CALL),
    );
    refused.push('fc-outage-unwrap-1');
    t.not(e1, 'succeeded', 'the first call after the fault does not succeed');
    if (e1 !== 'succeeded') {
      t.equal(e1.status, 'UNAVAILABLE', 'gRPC UNAVAILABLE');
      t.equal(e1.reason, 'AUDIT_UNAVAILABLE', 'ErrorInfo reason AUDIT_UNAVAILABLE');
    }
    // While unhealthy, every data-plane call is refused at once, whatever the method.
    const attempts: [string, string, object][] = [
      ['fc-outage-unwrap-2', 'Unwrap', { envelope: g.envelope }],
      ['fc-outage-wrap', 'Wrap', { keyName: 'demo', plaintextDek: g.plaintextDek }],
      ['fc-outage-gdk', 'GenerateDataKey', { keyName: 'demo' }],
      ['fc-outage-batch', 'BatchUnwrap', { items: [{ envelope: g.envelope }, { envelope: g.envelope }] }],
    ];
    for (const [requestId, method, req] of attempts) {
      const e = await failure(callUnary(c, method, { requestId, ...req }, CALL));
      refused.push(requestId);
      t.ok(
        e !== 'succeeded' && e.status === 'UNAVAILABLE' && e.reason === 'AUDIT_UNAVAILABLE',
        `${method} fails closed: ${e === 'succeeded' ? 'succeeded' : `${e.status} ${e.reason}`}`,
      );
    }
    t.ok(
      await waitFor(async () => (await healthStatus(home, d.port)) === 'NOT_SERVING', 5000),
      'grpc health reports NOT_SERVING',
    );
    const notReady = await readyz(d);
    t.equal(notReady.status, 503, '/readyz answers 503');
    t.match(notReady.body, /"ready":false/);
    t.match(notReady.body, /audit: unhealthy/, '/readyz names the audit log');
    t.equal(await metric(d, 'hyokd_audit_healthy'), 0, 'the audit health gauge is 0');
    // Still failing after more than one probe interval (the writer retries every second).
    await new Promise((r) => setTimeout(r, 1500));
    const e2 = await failure(
      callUnary(c, 'Unwrap', { requestId: 'fc-outage-unwrap-3', envelope: g.envelope }, CALL),
    );
    refused.push('fc-outage-unwrap-3');
    t.ok(e2 !== 'succeeded' && e2.reason === 'AUDIT_UNAVAILABLE', 'still refused while the disk stays full');
    t.equal(await healthStatus(home, d.port), 'NOT_SERVING');

    // --- space comes back ------------------------------------------------------------------
    setFileSizeLimit(d.pid, 'unlimited');
    restored = true;
    t.ok(
      await waitFor(async () => (await healthStatus(home, d.port)) === 'SERVING', 10_000),
      'grpc health is SERVING again without a restart',
    );
    t.equal((await readyz(d)).status, 200, '/readyz answers 200 again');
    t.equal(await metric(d, 'hyokd_audit_healthy'), 1);
    const after = await callUnary<{ plaintextDek: Buffer }>(
      c,
      'Unwrap',
      { requestId: 'fc-after', envelope: g.envelope },
      CALL,
    );
    t.same(after.plaintextDek, g.plaintextDek, 'calls succeed again');
    const wrapped = await callUnary<{ results: { status: { code: number } }[] }>(
      c,
      'BatchUnwrap',
      { requestId: 'fc-after-batch', items: [{ envelope: g.envelope }] },
      CALL,
    );
    t.equal(wrapped.results[0]?.status.code, 0, 'batches too');

    c.close();
    d.child.kill('SIGTERM');
    t.same(await d.exited, { code: 0, signal: null }, 'clean stop');
    running = null;

    // --- the record of it ---------------------------------------------------------------
    // Strict (no allowTornTail): the daemon stopped cleanly, and whatever the failed writes
    // left behind must be explained by the resume marker.
    const report = await verifyAuditDir(auditDir);
    t.equal(report.ok, true, `verify: ${JSON.stringify(report.firstError ?? null)}`);
    const records: AuditRecord[] = [];
    for await (const r of searchAudit(auditDir, {})) records.push(r);
    const resumes = records.filter((r) => r.type === 'resume');
    t.equal(resumes.length, 1, 'one resume marker');
    const resume = resumes[0]!;
    const outage = resume.outage as { kind?: string; failedRecords?: number } | null;
    t.equal(outage?.kind, 'EFBIG', 'the marker names the failure');
    t.ok((outage?.failedRecords ?? 0) >= 1, `and counts the refused records (${outage?.failedRecords})`);
    const from = resume.from as { seq: number } | null;
    t.equal(from?.seq, resume.seq - 1, 'the chain continues from the last durable record');
    const reqs = records.filter((r) => r.type === 'request');
    const find = (id: string) => reqs.filter((r) => r.requestId === id);
    const fcBefore = find('fc-before');
    t.equal(fcBefore.length, 1);
    t.ok(fcBefore[0]!.seq < resume.seq, 'the call before the fault is recorded before the marker');
    for (const id of refused) {
      t.notOk(
        find(id).some((r) => (r.result as { code: string }).code === 'OK'),
        `no OK record for the refused ${id}`,
      );
    }
    for (const id of ['fc-after', 'fc-after-batch']) {
      const rs = find(id);
      t.equal(rs.length, 1, `${id} is recorded`);
      t.ok(rs[0] && rs[0].seq > resume.seq, `${id} is recorded after the resume marker`);
    }
    const cli = await runCli(home, ['audit', 'verify', auditDir]);
    t.equal(cli.code, 0, `hyokd audit verify exits 0: ${cli.stdout}${cli.stderr}`);
  },
);
