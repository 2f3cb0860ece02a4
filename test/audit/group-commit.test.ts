import t from 'tap';
import { verifyAuditDir } from '../../src/audit/verify.js';
import { FaultyFs, openWriter, readRecords, request, tempDir } from './fixtures.js';

t.test('many concurrent appends share few fsyncs, and every one is acknowledged', async (t) => {
  const dir = tempDir(t);
  const w = await openWriter(dir);
  const before = w.stats();
  const n = 500;
  await Promise.all(Array.from({ length: n }, (_, i) => w.append(request(i))));
  const s = w.stats();
  const fsyncs = s.fsyncs - before.fsyncs;
  t.ok(fsyncs >= 1 && fsyncs <= 10, `${fsyncs} fsyncs for ${n} records`);
  t.ok(s.maxBatchSize >= 50, `largest batch ${s.maxBatchSize}`);
  t.equal(s.records - before.records, n);
  await w.close();
  const reqs = readRecords(dir).filter((r) => r.type === 'request');
  t.equal(reqs.length, n);
  t.equal(new Set(reqs.map((r) => r.requestId)).size, n, 'each record once');
  t.ok((await verifyAuditDir(dir)).ok);
});

t.test('records that arrive during an fsync go out together in the next batch', async (t) => {
  const dir = tempDir(t);
  const fs = new FaultyFs();
  const w = await openWriter(dir, { fs });
  const batches: number[] = [];
  w.on('batch', (b: { records: number }) => batches.push(b.records));
  fs.fsyncDelayMs = 50;
  const first = w.append(request(0));
  await new Promise((r) => setTimeout(r, 15)); // the first batch is now in its fsync
  const later = Array.from({ length: 40 }, (_, i) => w.append(request(i + 1)));
  await Promise.all([first, ...later]);
  t.same(batches, [1, 40]);
  t.equal(w.stats().lastBatchSize, 40);
  await w.close();
});

t.test('groupCommitMaxDelayMs lets an idle writer wait briefly for company', async (t) => {
  const dir = tempDir(t);
  const w = await openWriter(dir, { groupCommitMaxDelayMs: 100 });
  const batches: number[] = [];
  w.on('batch', (b: { records: number }) => batches.push(b.records));
  const a = w.append(request(0));
  await new Promise((r) => setTimeout(r, 5));
  const b = w.append(request(1));
  const started = Date.now();
  await Promise.all([a, b]);
  t.same(batches, [2]);
  t.ok(Date.now() - started < 500);
  await w.close();
});

t.test('groupCommitMaxRecords bounds a batch', async (t) => {
  const dir = tempDir(t);
  const w = await openWriter(dir, { groupCommitMaxRecords: 16 });
  const batches: number[] = [];
  w.on('batch', (b: { records: number }) => batches.push(b.records));
  await Promise.all(Array.from({ length: 40 }, (_, i) => w.append(request(i))));
  t.ok(Math.max(...batches) <= 17, `batches ${batches.join(',')}`); // + a possible checkpoint
  t.equal(
    batches.reduce((a, b) => a + b, 0),
    40,
  );
  await w.close();
});
