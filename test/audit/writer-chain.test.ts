import t from 'tap';
import { appendFileSync, closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { verifyAuditDir } from '../../src/audit/verify.js';
import { recordHash } from '../../src/audit/canonical.js';
import { SoftwareAuditSigner } from '../../src/audit/software-signer.js';
import {
  auditFiles,
  fileText,
  openWriter,
  readRecords,
  request,
  signer,
  tempDir,
  widestCheckpointGap,
} from './fixtures.js';

t.test('a fresh log: start, key, checkpoint, then records; each line is a chained JSON object', async (t) => {
  const dir = tempDir(t);
  const w = await openWriter(dir);
  await w.append(request(1));
  await w.append(request(2));
  await w.close();
  const recs = readRecords(dir);
  t.same(
    recs.map((r) => r.type),
    ['start', 'key', 'checkpoint', 'request', 'request', 'stop', 'checkpoint'],
  );
  t.same(
    recs.map((r) => r.seq),
    [0, 1, 2, 3, 4, 5, 6],
  );
  t.equal(recs[0]!.prev, '0'.repeat(64));
  for (let i = 0; i < recs.length; i++) {
    t.equal(recordHash(recs[i]!), recs[i]!.hash, `hash ${i}`);
    if (i > 0) t.equal(recs[i]!.prev, recs[i - 1]!.hash, `prev ${i}`);
    t.ok(!Number.isNaN(Date.parse(recs[i]!.ts)));
  }
  t.equal(recs[0]!.from, null);
  t.equal(recs[1]!.keyId, signer.keyId);
  t.equal(recs[3]!.requestId, 'req-1');
  const report = await verifyAuditDir(dir);
  t.ok(report.ok, JSON.stringify(report.firstError));
  t.equal(report.records, 7);
  t.equal(report.checkpoints, 2);
  t.same(report.keys, [signer.keyId]);
});

t.test('restart continues the chain in a new file with a start marker naming the last record', async (t) => {
  const dir = tempDir(t);
  const w1 = await openWriter(dir);
  await w1.append(request(1));
  await w1.close();
  const before = readRecords(dir);
  const last = before[before.length - 1]!;
  const w2 = await openWriter(dir);
  await w2.append(request(2));
  await w2.close();
  t.equal(auditFiles(dir).length, 2);
  const all = readRecords(dir);
  const start = all[before.length]!;
  t.equal(start.type, 'start');
  t.equal(start.seq, last.seq + 1);
  t.equal(start.prev, last.hash);
  t.same(start.from, { file: auditFiles(dir)[0], seq: last.seq, hash: last.hash });
  t.equal(start.clean, true);
  t.equal(start.torn, null);
  t.ok(auditFiles(dir)[1]!.startsWith(`audit-${String(start.seq).padStart(20, '0')}-`));
  const report = await verifyAuditDir(dir);
  t.ok(report.ok, JSON.stringify(report.firstError));
});

t.test('after a crash (no stop), the start marker says unclean and verify accepts it', async (t) => {
  const dir = tempDir(t);
  const w1 = await openWriter(dir);
  await w1.append(request(1));
  // no close: the process "dies" here
  const w2 = await openWriter(dir);
  await w2.close();
  const start = readRecords(dir).find((r) => r.type === 'start' && r.seq > 0)!;
  t.equal(start.clean, false);
  t.ok((await verifyAuditDir(dir)).ok);
  await w1.close().catch(() => undefined);
});

t.test('a torn last line is detected, declared by the start marker, and kept as evidence', async (t) => {
  const dir = tempDir(t);
  const w1 = await openWriter(dir);
  await w1.append(request(1));
  const file = auditFiles(dir)[0]!;
  const partial = '{"seq":5,"type":"request","op":"unwr';
  // Where the crash cuts the next write: right after the records (into the writer's
  // zero-filled space, when it has some).
  const at = Buffer.byteLength(fileText(dir, file));
  const fd = openSync(join(dir, file), 'r+');
  writeSync(fd, partial, at);
  closeSync(fd);
  const crashed = await verifyAuditDir(dir);
  t.notOk(crashed.ok);
  t.equal(crashed.firstError?.kind, 'torn-line');
  t.equal(crashed.firstError?.file, file);
  t.ok((await verifyAuditDir(dir, { allowTornTail: true })).ok, 'a live log may end in a partial line');

  const w2 = await openWriter(dir);
  await w2.append(request(2));
  await w2.close();
  const old = readFileSync(join(dir, file));
  t.equal(old.subarray(at, at + partial.length).toString('utf8'), partial, 'old file untouched');
  const start = readRecords(dir).find((r) => r.type === 'start' && r.seq > 0)!;
  t.same(start.torn, {
    file,
    offset: at,
    length: partial.length,
    sha256: (await import('node:crypto')).createHash('sha256').update(partial).digest('hex'),
  });
  t.equal(start.seq, 4, 'continues after the last complete record');
  const report = await verifyAuditDir(dir);
  t.ok(report.ok, JSON.stringify(report.firstError));
  await w1.close().catch(() => undefined);
});

t.test('a file whose only content is a partial line is skipped and declared', async (t) => {
  const dir = tempDir(t);
  const w1 = await openWriter(dir, { maxFileBytes: 1 });
  await w1.append(request(1)); // rotation happens before the next record
  await w1.close();
  const files = auditFiles(dir);
  const w2 = await openWriter(dir);
  await w2.close();
  const lastFile = auditFiles(dir).at(-1)!;
  // Replace the newest file by a lone partial line, as if the crash hit its first write.
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(dir, lastFile), '{"seq":');
  t.ok(files.length >= 2);
  const w3 = await openWriter(dir);
  await w3.close();
  const start = readRecords(dir)
    .filter((r) => r.type === 'start')
    .at(-1)!;
  t.equal(start.type, 'start');
  t.equal((start.torn as { file: string }).file, lastFile);
  const report = await verifyAuditDir(dir);
  t.ok(report.ok, JSON.stringify(report.firstError));
});

t.test('a corrupt last complete line refuses to start', async (t) => {
  const dir = tempDir(t);
  const w1 = await openWriter(dir);
  await w1.close();
  appendFileSync(join(dir, auditFiles(dir)[0]!), '{"not":"a record"}\n');
  await t.rejects(openWriter(dir), { code: 'AUDIT_TAIL_CORRUPT' });
});

t.test(
  'files rotate by size; each file is sealed by rotate + checkpoint and the chain continues',
  async (t) => {
    const dir = tempDir(t);
    const w = await openWriter(dir, { maxFileBytes: 2000 });
    for (let i = 0; i < 30; i++) await w.append(request(i));
    await w.close();
    const files = auditFiles(dir);
    t.ok(files.length >= 3, `${files.length} files`);
    const recs = readRecords(dir);
    const rotates = recs.filter((r) => r.type === 'rotate');
    t.equal(rotates.length, files.length - 1);
    for (const r of rotates) {
      t.ok(files.includes(r.nextFile as string), `${r.nextFile as string} exists`);
      const after = recs[recs.indexOf(r) + 1]!;
      t.equal(after.type, 'checkpoint');
      t.equal(after.reason, 'rotate');
    }
    t.same(
      recs.map((r) => r.seq),
      recs.map((_, i) => i),
    );
    const report = await verifyAuditDir(dir);
    t.ok(report.ok, JSON.stringify(report.firstError));
    t.equal(report.files, files.length);
  },
);

t.test('files rotate by age', async (t) => {
  const dir = tempDir(t);
  let now = Date.parse('2026-01-01T00:00:00Z');
  const w = await openWriter(dir, { maxFileAgeMs: 60_000, now: () => new Date(now) });
  await w.append(request(1));
  now += 61_000;
  await w.append(request(2));
  await w.close();
  const files = auditFiles(dir);
  t.equal(files.length, 2);
  t.match(files[0]!, /-20260101T000000Z\.jsonl$/);
  t.match(files[1]!, /-20260101T000101Z\.jsonl$/);
  t.ok((await verifyAuditDir(dir)).ok);
});

t.test('a checkpoint every N records and every T ms', async (t) => {
  const dir = tempDir(t);
  const w = await openWriter(dir, { checkpointEveryRecords: 5 });
  for (let i = 0; i < 12; i++) await w.append(request(i));
  await new Promise((r) => setTimeout(r, 20));
  const counted = readRecords(dir).filter((r) => r.type === 'checkpoint' && r.reason === 'count');
  t.ok(counted.length >= 2, `${counted.length} count checkpoints`);
  await w.close();

  const dir2 = tempDir(t);
  const w2 = await openWriter(dir2, { checkpointEveryMs: 50 });
  await w2.append(request(1));
  await new Promise((r) => setTimeout(r, 150));
  const timed = readRecords(dir2).filter((r) => r.type === 'checkpoint' && r.reason === 'interval');
  t.equal(timed.length, 1, 'one interval checkpoint after the record, none while idle');
  await w2.close();
  t.ok((await verifyAuditDir(dir)).ok);
  t.ok((await verifyAuditDir(dir2)).ok);
});

t.test('key rotation is recorded and the old key vouches for the new one', async (t) => {
  const dir = tempDir(t);
  const w = await openWriter(dir);
  await w.append(request(1));
  const next = new SoftwareAuditSigner();
  await w.rotateSigner(next);
  await w.append(request(2));
  await w.close();
  const recs = readRecords(dir);
  const k = recs.findIndex((r) => r.type === 'key' && r.reason === 'rotation');
  t.ok(k > 0);
  t.equal(recs[k]!.keyId, next.keyId);
  t.equal(recs[k]!.previousKeyId, signer.keyId);
  t.equal(recs[k + 1]!.type, 'checkpoint');
  t.equal(recs[k + 1]!.keyId, signer.keyId, 'old key signs over the new key record');
  t.equal(recs[k + 2]!.keyId, next.keyId);
  t.equal(recs.at(-1)!.keyId, next.keyId, 'later checkpoints use the new key');
  const report = await verifyAuditDir(dir);
  t.ok(report.ok, JSON.stringify(report.firstError));
  t.same(report.keys.sort(), [signer.keyId, next.keyId].sort());
  const onlyOld = await verifyAuditDir(dir, { trustedKeys: [signer.publicKeySpkiDer()] });
  t.equal(onlyOld.firstError?.kind, 'untrusted-key');
  t.ok((await verifyAuditDir(dir, { trustedKeys: [signer.publicKeySpkiDer(), next.publicKeySpkiDer()] })).ok);
});

t.test('external anchors: a checkpoint mirrored to the operational log pins the chain', async (t) => {
  const dir = tempDir(t);
  const mirrored: { seq: number; hash: string }[] = [];
  const logger = {
    info: (o: object) => {
      const c = (o as { audit?: { checkpoint?: { seq: number; hash: string } } }).audit?.checkpoint;
      if (c) mirrored.push({ seq: c.seq, hash: c.hash });
    },
    warn: () => undefined,
    error: () => undefined,
  };
  const w = await openWriter(dir, { logger });
  await w.append(request(1));
  await w.close();
  t.equal(mirrored.length, 2);
  t.ok((await verifyAuditDir(dir, { anchors: mirrored })).ok);
  // Someone drops the newest records (the stop and its checkpoint): the chain alone cannot
  // tell, the anchor can.
  const file = auditFiles(dir)[0]!;
  const lines = readFileSync(join(dir, file), 'utf8').split('\n').filter(Boolean);
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(dir, file), lines.slice(0, -2).join('\n') + '\n');
  t.ok((await verifyAuditDir(dir)).ok, 'without anchors this is invisible');
  const r = await verifyAuditDir(dir, { anchors: mirrored });
  t.equal(r.firstError?.kind, 'truncated');
});

t.test('stats count records, batches and fsyncs; the start info is sanitized', async (t) => {
  const dir = tempDir(t);
  const w = await openWriter(dir, { startInfo: { version: '0.1.0', pin: '1234' } });
  await w.append(request(1));
  const s = w.stats();
  t.equal(s.healthy, true);
  t.equal(s.records, 4);
  t.equal(s.fsyncs, 2);
  t.equal(s.batches, 2);
  t.equal(s.failures, 0);
  t.equal(s.head?.seq, 3);
  t.ok(s.lastWriteLatencyMs >= 0);
  await w.close();
  t.same(readRecords(dir)[0]!.info, { version: '0.1.0', pin: '[redacted]' });
  await t.rejects(w.append(request(2)), { code: 'AUDIT_UNAVAILABLE', kind: 'CLOSED' });
  t.equal(w.healthy(), false);
});

t.test(
  'a pino logger is the operational mirror: checkpoints and health, never record contents',
  async (t) => {
    const { default: pino } = await import('pino');
    const { Writable } = await import('node:stream');
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n'))
          if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const logger = pino({ level: 'info' }, sink);
    const dir = tempDir(t);
    const w = await openWriter(dir, { logger });
    await w.append(request(1, { context: { reason: 'nightly-job' } }));
    await w.close();
    await new Promise((r) => setImmediate(r));
    const cps = lines.filter((l) => l.msg === 'audit checkpoint');
    t.equal(cps.length, 2);
    const onDisk = readRecords(dir).filter((r) => r.type === 'checkpoint');
    t.same(
      cps.map((l) => (l.audit as { checkpoint: { hash: string } }).checkpoint.hash),
      onDisk.map((r) => r.hash),
    );
    const all = JSON.stringify(lines);
    t.notMatch(all, /nightly-job/, 'record contents stay in the audit files');
    t.notMatch(all, /req-1/);
  },
);

t.test('under load with small files and frequent checkpoints the chain still verifies', async (t) => {
  const dir = tempDir(t);
  // Rotation and checkpoints happen between batches; small batches give many of both.
  const w = await openWriter(dir, {
    maxFileBytes: 20_000,
    checkpointEveryRecords: 50,
    groupCommitMaxRecords: 20,
  });
  for (let round = 0; round < 4; round++) {
    await Promise.all(Array.from({ length: 250 }, (_, i) => w.append(request(round * 1000 + i))));
  }
  await w.close();
  const report = await verifyAuditDir(dir);
  t.ok(report.ok, JSON.stringify(report.firstError));
  t.ok(report.files > 5, `${report.files} files`);
  // A checkpoint is due after 50 records and goes in before the next batch: with
  // batches of 20, at most three batches (60 requests) between two checkpoints.
  const widest = widestCheckpointGap(dir);
  t.ok(widest <= 60, `at most 60 requests between checkpoints (${widest})`);
  t.ok(report.checkpoints >= Math.floor(1000 / 60), `${report.checkpoints} checkpoints`);
  t.equal(readRecords(dir).filter((r) => r.type === 'request').length, 1000);
});
