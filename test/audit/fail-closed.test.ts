// The writer refuses (AUDIT_UNAVAILABLE) when it cannot make a record durable, says so,
// and recovers by itself with an explicit resume marker; verify passes afterwards.
import t from 'tap';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { verifyAuditDir } from '../../src/audit/verify.js';
import type { AuditWriter } from '../../src/audit/writer.js';
import { auditFiles, FaultyFs, openWriter, readRecords, request, tempDir } from './fixtures.js';

function healthEvents(w: AuditWriter): [boolean, string | null][] {
  const events: [boolean, string | null][] = [];
  w.on('health', (h: boolean, kind: string | null) => events.push([h, kind]));
  return events;
}

function waitHealthy(w: AuditWriter, ms = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (w.healthy()) return resolve();
    const timer = setTimeout(() => reject(new Error('did not recover')), ms);
    w.on('health', (h: boolean) => {
      if (h) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

for (const code of ['ENOSPC', 'EIO', 'EROFS', 'EACCES']) {
  t.test(`write fails with ${code}: refuse, report, recover with a resume marker`, async (t) => {
    const dir = tempDir(t);
    const fs = new FaultyFs();
    const kinds: (string | null)[] = [];
    const w = await openWriter(dir, { fs, onHealthChange: (_h, k) => kinds.push(k) });
    const events = healthEvents(w);
    await w.append(request(1));
    const acked = w.stats().head!;

    fs.writeError = code;
    const failing = [w.append(request(2)), w.append(request(3))];
    for (const p of failing) await t.rejects(p, { code: 'AUDIT_UNAVAILABLE', kind: code });
    t.equal(w.healthy(), false);
    t.same(events, [[false, code]]);
    const started = Date.now();
    await t.rejects(w.append(request(4)), { code: 'AUDIT_UNAVAILABLE' }, 'refused at once while unhealthy');
    t.ok(Date.now() - started < 50);
    const s = w.stats();
    t.equal(s.failures, 1);
    t.equal(s.lastErrorKind, code);
    t.equal(s.rejected, 3);

    fs.writeError = null;
    await waitHealthy(w);
    t.same(events, [
      [false, code],
      [true, null],
    ]);
    t.same(kinds, [code, null]);
    await w.append(request(5));
    await w.close();

    const recs = readRecords(dir);
    const resume = recs.find((r) => r.type === 'resume')!;
    t.ok(resume, 'resume marker written');
    t.same(resume.lastAcked, { file: auditFiles(dir)[0], ...acked });
    t.same(
      resume.from,
      { file: auditFiles(dir)[0], ...acked },
      'nothing of the failed batch reached the disk',
    );
    t.equal((resume.outage as { kind: string }).kind, code);
    t.equal((resume.outage as { failedRecords: number }).failedRecords, 3);
    t.equal(resume.seq, acked.seq + 1);
    t.notOk(
      recs.some((r) => r.requestId === 'req-2' || r.requestId === 'req-3' || r.requestId === 'req-4'),
      'refused records are not in the log',
    );
    t.ok(recs.some((r) => r.requestId === 'req-5'));
    const report = await verifyAuditDir(dir);
    t.ok(report.ok, JSON.stringify(report.firstError));
  });
}

t.test(
  'fsync fails with EIO: the written but unsynced record is not acknowledged; the chain stays consistent',
  async (t) => {
    const dir = tempDir(t);
    const fs = new FaultyFs();
    const w = await openWriter(dir, { fs });
    const acked = w.stats().head!;
    fs.fsyncError = 'EIO';
    await t.rejects(w.append(request(1)), { code: 'AUDIT_UNAVAILABLE', kind: 'EIO' });
    fs.fsyncError = null;
    await waitHealthy(w);
    await w.close();
    const resume = readRecords(dir).find((r) => r.type === 'resume')!;
    // The line reached the page cache, so the chain continues after it; lastAcked shows it was never acknowledged.
    t.equal((resume.from as { seq: number }).seq, acked.seq + 1);
    t.equal((resume.lastAcked as { seq: number }).seq, acked.seq);
    t.ok((await verifyAuditDir(dir)).ok);
  },
);

t.test('a short write then an error leaves a partial line that the resume marker declares', async (t) => {
  const dir = tempDir(t);
  const fs = new FaultyFs();
  const w = await openWriter(dir, { fs });
  const file = auditFiles(dir)[0]!;
  fs.shortWrite = 30;
  await t.rejects(w.append(request(1)), { code: 'AUDIT_UNAVAILABLE', kind: 'EIO' });
  fs.writeError = null;
  await waitHealthy(w);
  await w.close();
  const data = readFileSync(join(dir, file));
  const partial = data.subarray(data.lastIndexOf(0x0a) + 1);
  t.equal(partial.length, 30, 'the partial bytes stay where they fell');
  const resume = readRecords(dir).find((r) => r.type === 'resume')!;
  t.same(resume.torn, {
    file,
    offset: data.length - 30,
    length: 30,
    sha256: createHash('sha256').update(partial).digest('hex'),
  });
  const report = await verifyAuditDir(dir);
  t.ok(report.ok, JSON.stringify(report.firstError));
});

t.test('a hung fsync fails within writeTimeoutMs; recovery waits until the hung call settles', async (t) => {
  const dir = tempDir(t);
  const fs = new FaultyFs();
  const w = await openWriter(dir, { fs, writeTimeoutMs: 150, probeIntervalMs: 20 });
  fs.hangFsync = true;
  const started = Date.now();
  await t.rejects(w.append(request(1)), { code: 'AUDIT_UNAVAILABLE', kind: 'TIMEOUT' });
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 140 && elapsed < 1000, `rejected after ${elapsed} ms`);
  t.equal(w.healthy(), false);
  t.equal(w.stats().lastErrorKind, 'TIMEOUT');
  fs.hangFsync = false;
  await new Promise((r) => setTimeout(r, 200));
  t.equal(w.healthy(), false, 'no resume while the hung call may still write');
  fs.release();
  await waitHealthy(w);
  await w.append(request(2));
  await w.close();
  const report = await verifyAuditDir(dir);
  t.ok(report.ok, JSON.stringify(report.firstError));
  t.ok(readRecords(dir).some((r) => r.type === 'resume'));
});

t.test('a real failure as root: the audit directory replaced by a regular file', async (t) => {
  const parent = tempDir(t);
  const dir = join(parent, 'audit');
  const moved = join(parent, 'audit.moved');
  // Rotate before every batch, so each batch has to create a file in the directory.
  const w = await openWriter(dir, { maxFileBytes: 1 });
  const events = healthEvents(w);
  await w.append(request(1));

  renameSync(dir, moved);
  writeFileSync(dir, 'not a directory');
  await t.rejects(w.append(request(2)), { code: 'AUDIT_UNAVAILABLE', kind: 'ENOTDIR' });
  t.equal(w.healthy(), false);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(w.healthy(), false, 'still refusing while the path is broken');
  await t.rejects(w.append(request(3)), { code: 'AUDIT_UNAVAILABLE' });

  rmSync(dir);
  renameSync(moved, dir);
  await waitHealthy(w);
  t.same(
    events.map((e) => e[0]),
    [false, true],
  );
  await w.append(request(4));
  await w.close();
  const report = await verifyAuditDir(dir);
  t.ok(report.ok, JSON.stringify(report.firstError));
  const recs = readRecords(dir);
  t.ok(recs.some((r) => r.type === 'resume'));
  t.ok(recs.some((r) => r.requestId === 'req-4'));
  t.notOk(recs.some((r) => r.requestId === 'req-2' || r.requestId === 'req-3'));
});

t.test('acknowledged records gone from disk: the writer refuses to resume over them', async (t) => {
  const dir = tempDir(t);
  const fs = new FaultyFs();
  const w = await openWriter(dir, { fs });
  await w.append(request(1));
  fs.writeError = 'EIO';
  await t.rejects(w.append(request(2)), { code: 'AUDIT_UNAVAILABLE' });
  // Someone removes the log while it is failing.
  for (const f of auditFiles(dir)) rmSync(join(dir, f));
  fs.writeError = null;
  await new Promise((r) => setTimeout(r, 150));
  t.equal(w.healthy(), false);
  t.equal(w.stats().lastErrorKind, 'HEAD_REGRESSED');
  t.same(auditFiles(dir), [], 'no new chain started over the loss');
  await w.close();
});

t.test('open fails with AUDIT_UNAVAILABLE when the directory cannot be created', async (t) => {
  const parent = tempDir(t);
  writeFileSync(join(parent, 'file'), 'x');
  await t.rejects(openWriter(join(parent, 'file', 'audit')), { code: 'AUDIT_UNAVAILABLE', kind: 'ENOTDIR' });
});

t.test('a failing signer skips checkpoints but never blocks records', async (t) => {
  const dir = tempDir(t);
  const { signer } = await import('./fixtures.js');
  let broken = false;
  const flaky = {
    keyId: signer.keyId,
    publicKeySpkiDer: () => signer.publicKeySpkiDer(),
    sign: (d: Buffer) => (broken ? Promise.reject(new Error('hsm down')) : signer.sign(d)),
  };
  const w = await openWriter(dir, { signer: flaky, checkpointEveryRecords: 2 });
  broken = true;
  for (let i = 0; i < 5; i++) await w.append(request(i));
  t.ok(w.stats().checkpointFailures >= 1);
  t.equal(w.healthy(), true);
  broken = false;
  await w.close();
  t.ok((await verifyAuditDir(dir)).ok);
  await t.rejects(
    (async () => {
      const w2 = await openWriter(tempDir(t), { signer: flaky });
      broken = true;
      const { SoftwareAuditSigner } = await import('../../src/audit/software-signer.js');
      try {
        await w2.rotateSigner(new SoftwareAuditSigner());
      } finally {
        broken = false;
        await w2.close();
      }
    })(),
    { code: 'AUDIT_UNAVAILABLE', kind: 'SIGNER' },
    'a key rotation the old key cannot vouch for is refused',
  );
});

t.test('close while unhealthy resolves, refuses further appends, and writes nothing later', async (t) => {
  const dir = tempDir(t);
  const fs = new FaultyFs();
  const w = await openWriter(dir, { fs, probeIntervalMs: 30 });
  fs.writeError = 'ENOSPC';
  await t.rejects(w.append(request(1)));
  const filesBefore = auditFiles(dir);
  await w.close();
  fs.writeError = null;
  await new Promise((r) => setTimeout(r, 120));
  t.same(auditFiles(dir), filesBefore, 'no probe resumed after close');
  t.equal(w.healthy(), false);
  await t.rejects(w.append(request(2)), { code: 'AUDIT_UNAVAILABLE', kind: 'CLOSED' });
  const report = await verifyAuditDir(dir);
  t.ok(report.ok, JSON.stringify(report.firstError));
});

t.test('a hung open of a new file that completes late does not leak into the writer', async (t) => {
  const dir = tempDir(t);
  const fs = new FaultyFs();
  const w = await openWriter(dir, { fs, maxFileBytes: 1, writeTimeoutMs: 100, probeIntervalMs: 20 });
  await w.append(request(1));
  fs.hangOpen = true;
  await t.rejects(w.append(request(2)), { code: 'AUDIT_UNAVAILABLE', kind: 'TIMEOUT' });
  fs.hangOpen = false;
  fs.release(); // the open finishes now, and the abandoned batch lands in its file
  await waitHealthy(w);
  await w.append(request(3));
  await w.close();
  const recs = readRecords(dir);
  const resume = recs.find((r) => r.type === 'resume')!;
  const late = recs.find((r) => r.requestId === 'req-2');
  t.ok(late, 'the late batch is on disk (never acknowledged)');
  t.equal((resume.from as { seq: number }).seq, late!.seq, 'the resume marker continues after it');
  t.ok((resume.lastAcked as { seq: number }).seq < late!.seq);
  const report = await verifyAuditDir(dir);
  t.ok(report.ok, JSON.stringify(report.firstError));
  t.ok(recs.some((r) => r.requestId === 'req-3'));
});

t.test('retries during an outage leave no empty files behind', async (t) => {
  const dir = tempDir(t);
  const fs = new FaultyFs();
  const w = await openWriter(dir, { fs });
  await w.append(request(1));
  const before = auditFiles(dir);
  fs.writeError = 'ENOSPC';
  await t.rejects(w.append(request(2)), { code: 'AUDIT_UNAVAILABLE' });
  // probeIntervalMs is 20 ms in the fixtures: let a dozen recovery attempts fail.
  await new Promise((r) => setTimeout(r, 300));
  t.ok(w.stats().failures >= 1);
  fs.writeError = null;
  await waitHealthy(w);
  await w.append(request(3));
  await w.close();
  // Each failed attempt's clean-up runs once its I/O has settled: give the last one a moment.
  const empty = () => auditFiles(dir).filter((f) => readFileSync(join(dir, f)).length === 0);
  for (let i = 0; i < 50 && empty().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.same(empty(), [], 'no empty file per failed attempt');
  t.equal(auditFiles(dir).length, before.length + 1, 'one new file: the one the resume marker opened');
  t.ok((await verifyAuditDir(dir)).ok);
});
