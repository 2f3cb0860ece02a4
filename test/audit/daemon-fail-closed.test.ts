// A real daemon whose audit log cannot be written fails closed: data-plane calls get
// UNAVAILABLE with reason AUDIT_UNAVAILABLE and no DEK, grpc health says NOT_SERVING,
// /readyz answers 503; once the log is writable again the daemon resumes by itself
// with a `resume` marker and the chain verifies.
//
// Making the disk unwritable for a root process: root ignores permission bits, and a
// renamed or replaced directory would not stop writes to the file the daemon already
// holds open (nor can a file system be remounted read-only while a file on it is open
// for writing). Two real faults instead:
// - EFBIG: the daemon's RLIMIT_FSIZE lowered to 0 with prlimit(1). Every write to a
//   regular file fails in the kernel (Node ignores SIGXFSZ); raising it again is the
//   disk coming back.
// - ENOSPC: the audit directory on a tiny tmpfs the test fills up, then frees. A write
//   may first be cut short at the last free byte, leaving a partial line the resume
//   marker must declare. The writer's zero-filled space ahead of its records (which
//   lets calls go on into it after the disk is full) is given back when it leaves the
//   file; the test keeps the disk full against that until it frees it. Needs mount(2)
//   (root with CAP_SYS_ADMIN); skipped otherwise.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@grpc/grpc-js';
import t, { type Test } from 'tap';
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

const CALL = { timeoutMs: 10_000 };

function works(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
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

interface Scenario {
  home: string;
  auditDir: string;
  env?: NodeJS.ProcessEnv;
  /** The error kind the writer reports (and the resume marker names). */
  kind: string;
  /** Make the audit log unwritable. */
  fault(d: DaemonProcess): void;
  /** Make it writable again. */
  restore(d: DaemonProcess): void;
  /**
   * Called every 50 ms from the first refusal until `restore`: keeps the fault in place
   * against what the daemon itself gives back (its unused reserved audit space).
   */
  hold?(d: DaemonProcess): void;
}

/** The whole story on one daemon: serve, fault, fail closed, recover, verify. */
async function failClosedAndRecover(t: Test, s: Scenario): Promise<void> {
  let running: DaemonProcess | null = await startDaemonProcess(s.home, s.env ? { env: s.env } : {});
  const d = running;
  t.teardown(() => killDaemon(running));
  const c: Client = hyokClient(s.home, d.port);
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
  t.equal(await healthStatus(s.home, d.port), 'SERVING', 'health SERVING before the fault');
  t.equal((await readyz(d)).status, 200, '/readyz 200 before the fault');
  t.equal(await metric(d, 'hyokd_audit_healthy'), 1, 'audit gauge 1 before the fault');

  // --- the fault ---------------------------------------------------------------------
  s.fault(d);
  let restored = false;
  let holding: NodeJS.Timeout | undefined;
  t.teardown(() => {
    clearInterval(holding);
    if (!restored) s.restore(d);
  });
  // Calls until the first refusal: a full disk may still take what fits in its last
  // block; each call answered with success must keep its record.
  const acked: string[] = [];
  const refused: string[] = [];
  let first: CallError | 'succeeded' = 'succeeded';
  for (let i = 0; i < 60 && first === 'succeeded'; i++) {
    const requestId = `fc-filling-${i}`;
    first = await failure(callUnary(c, 'Unwrap', { requestId, envelope: g.envelope }, CALL));
    (first === 'succeeded' ? acked : refused).push(requestId);
  }
  t.comment(`${acked.length} calls still fitted after the fault`);
  if (s.hold) {
    s.hold(d);
    holding = setInterval(() => s.hold!(d), 50);
  }
  t.not(first, 'succeeded', 'a call is refused once the audit log cannot be written');
  if (first !== 'succeeded') {
    t.equal(first.status, 'UNAVAILABLE', 'gRPC UNAVAILABLE');
    t.equal(first.reason, 'AUDIT_UNAVAILABLE', 'ErrorInfo reason AUDIT_UNAVAILABLE');
  }
  // While unhealthy, every data-plane call is refused at once, whatever the method.
  const attempts: [string, string, object][] = [
    ['fc-outage-unwrap', 'Unwrap', { envelope: g.envelope }],
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
    await waitFor(async () => (await healthStatus(s.home, d.port)) === 'NOT_SERVING', 5000),
    'grpc health reports NOT_SERVING',
  );
  const notReady = await readyz(d);
  t.equal(notReady.status, 503, '/readyz answers 503');
  t.match(notReady.body, /"ready":false/);
  t.match(notReady.body, /audit: unhealthy/, '/readyz names the audit log');
  t.equal(await metric(d, 'hyokd_audit_healthy'), 0, 'the audit health gauge is 0');
  // Still failing after more than one probe interval (the writer retries every second).
  await new Promise((r) => setTimeout(r, 1500));
  const later = await failure(
    callUnary(c, 'Unwrap', { requestId: 'fc-outage-later', envelope: g.envelope }, CALL),
  );
  refused.push('fc-outage-later');
  t.ok(later !== 'succeeded' && later.reason === 'AUDIT_UNAVAILABLE', 'still refused while the fault lasts');
  t.equal(await healthStatus(s.home, d.port), 'NOT_SERVING', 'still NOT_SERVING');

  // --- the disk comes back --------------------------------------------------------------
  clearInterval(holding);
  s.restore(d);
  restored = true;
  t.ok(
    await waitFor(async () => (await healthStatus(s.home, d.port)) === 'SERVING', 10_000),
    'grpc health is SERVING again without a restart',
  );
  t.equal((await readyz(d)).status, 200, '/readyz answers 200 again');
  t.equal(await metric(d, 'hyokd_audit_healthy'), 1, 'the audit health gauge is 1 again');
  const after = await callUnary<{ plaintextDek: Buffer }>(
    c,
    'Unwrap',
    { requestId: 'fc-after', envelope: g.envelope },
    CALL,
  );
  t.same(after.plaintextDek, g.plaintextDek, 'calls succeed again');
  const batch = await callUnary<{ results: { status: { code: number } }[] }>(
    c,
    'BatchUnwrap',
    { requestId: 'fc-after-batch', items: [{ envelope: g.envelope }] },
    CALL,
  );
  t.equal(batch.results[0]?.status.code, 0, 'batches too');

  d.child.kill('SIGTERM');
  t.same(await d.exited, { code: 0, signal: null }, 'clean stop');
  running = null;

  // --- the record of it -----------------------------------------------------------------
  // Strict (no allowTornTail): the daemon stopped cleanly, so whatever the failed writes
  // left behind (a cut-short line, an empty file) must be declared by the resume marker.
  const report = await verifyAuditDir(s.auditDir);
  t.equal(report.ok, true, `verify: ${JSON.stringify(report.firstError ?? null)}`);
  const records: AuditRecord[] = [];
  for await (const r of searchAudit(s.auditDir, {})) records.push(r);
  t.equal(records.length, report.records, 'every record was read');
  const resumes = records.filter((r) => r.type === 'resume');
  t.equal(resumes.length, 1, 'one resume marker');
  const resume = resumes[0]!;
  const outage = resume.outage as { kind?: string; failedRecords?: number } | null;
  t.equal(outage?.kind, s.kind, `the marker names the failure (${s.kind})`);
  t.ok(
    (outage?.failedRecords ?? 0) >= refused.length,
    `and counts the refused records (${outage?.failedRecords} >= ${refused.length})`,
  );
  const from = resume.from as { seq: number } | null;
  t.equal(from?.seq, resume.seq - 1, 'the chain continues from the last durable record');
  t.comment(`resume marker: torn ${JSON.stringify(resume.torn ?? null)}`);
  const reqs = records.filter((r) => r.type === 'request');
  const find = (id: string) => reqs.filter((r) => r.requestId === id);
  for (const id of ['fc-before', ...acked]) {
    const rs = find(id);
    t.ok(
      rs.length === 1 && (rs[0]!.result as { code: string }).code === 'OK' && rs[0]!.seq < resume.seq,
      `acknowledged ${id} has its OK record before the marker`,
    );
  }
  for (const id of refused) {
    t.notOk(
      find(id).some((r) => (r.result as { code: string }).code === 'OK'),
      `no OK record for the refused ${id}`,
    );
  }
  for (const id of ['fc-after', 'fc-after-batch']) {
    const rs = find(id);
    t.ok(rs.length === 1 && rs[0]!.seq > resume.seq, `${id} is recorded after the resume marker`);
  }
  const cli = await runCli(s.home, ['audit', 'verify', s.auditDir]);
  t.equal(cli.code, 0, `hyokd audit verify exits 0: ${cli.stdout}${cli.stderr}`);
}

t.test(
  'file size limit (EFBIG): fails closed and recovers by itself',
  { skip: !works('prlimit', ['--version']) && 'prlimit(1) is not installed' },
  async (t) => {
    const home = mkdtempSync(join(tmpdir(), 'hyokd-failclosed-'));
    t.teardown(() => rmSync(home, { recursive: true, force: true }));
    await failClosedAndRecover(t, {
      home,
      auditDir: join(home, 'var', 'audit'),
      kind: 'EFBIG',
      fault: (d) => setFileSizeLimit(d.pid, 0),
      restore: (d) => {
        if (d.child.exitCode === null && d.child.signalCode === null) setFileSizeLimit(d.pid, 'unlimited');
      },
    });
  },
);

/** Mounts a tmpfs of `size` at `at`; false when this process may not mount. */
function mountTmpfs(at: string, size: string): boolean {
  mkdirSync(at, { recursive: true });
  return works('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', at]);
}

/** Writes zeros to `path` (after what it holds) until the file system refuses (ENOSPC). */
function fillUp(path: string): void {
  const fd = openSync(path, 'a');
  try {
    for (const size of [64 * 1024, 4096, 512, 1]) {
      const chunk = Buffer.alloc(size);
      for (;;) {
        try {
          if (writeSync(fd, chunk) < size) break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw e;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

// Mounted before the test so it can be skipped where mounting is not allowed.
const enospcHome = mkdtempSync(join(tmpdir(), 'hyokd-failclosed-'));
const mnt = join(enospcHome, 'audit-fs');
const mounted = mountTmpfs(mnt, '1m');
t.teardown(() => {
  // After the test's own teardown has stopped the daemon: lazy, in case a descriptor lingers.
  if (mounted) works('umount', ['-l', mnt]);
  rmSync(enospcHome, { recursive: true, force: true });
});

t.test(
  'full file system (ENOSPC): fails closed and recovers by itself',
  { skip: !mounted && 'cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)' },
  async (t) => {
    const auditDir = join(mnt, 'audit');
    const filler = join(mnt, 'filler');
    await failClosedAndRecover(t, {
      home: enospcHome,
      auditDir,
      env: { HYOKD_AUDIT_DIR: auditDir },
      kind: 'ENOSPC',
      fault: () => fillUp(filler),
      // The writer cuts the zero-filled space it no longer needs off the file it left:
      // another writer on this disk would take it, as the filler does here.
      hold: () => fillUp(filler),
      restore: () => rmSync(filler, { force: true }),
    });
  },
);
