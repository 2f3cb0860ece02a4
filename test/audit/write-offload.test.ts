// The audit writer's helper thread: batches of caller records chained and written off
// the event loop, byte for byte as the writer would itself; I/O errors answered, a dead
// thread failing its jobs, and the writer carrying on without it.
import t from 'tap';
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bodySegments, chainLine, GENESIS_PREV, type BodySegments } from '../../src/audit/canonical.js';
import { chainBatch, packBatch, unpackBatch } from '../../src/audit/chain-batch.js';
import { eventSegments } from '../../src/audit/record.js';
import { verifyAuditDir } from '../../src/audit/verify.js';
import { AuditWriteOffload } from '../../src/audit/write-offload.js';
import { auditFiles, FaultyFs, openWriter, readRecords, request, tempDir } from './fixtures.js';

const TS = '2026-12-01T00:00:00.000Z';

const bodies: BodySegments[] = [
  eventSegments(request(0)),
  eventSegments(request(1, { context: { reason: 'r' }, details: { envelope: 'ab' } })),
  bodySegments({ type: 'x' }),
  bodySegments({ a: 1, i: 2, q: 3, sf: 4, u: 5, type: 'all' }),
  bodySegments({ z: 'é\u2028"', type: 'late' }),
];

t.test('a packed batch unpacks to the same bodies', async (t) => {
  t.same(unpackBatch(packBatch(bodies)), bodies);
  t.same(unpackBatch(packBatch([])), []);
  t.same(unpackBatch(packBatch([bodies[2]!])), [bodies[2]]);
  t.throws(() => unpackBatch('a\u001fb'), TypeError, 'too few segments');
});

t.test('chainBatch makes the lines chainLine makes, in order', async (t) => {
  const prev = 'c'.repeat(64);
  const b = chainBatch(bodies, 7, TS, prev);
  let text = '';
  let hash = prev;
  bodies.forEach((s, i) => {
    const r = chainLine(s, 7 + i, TS, hash);
    hash = r.hash;
    text += r.line + '\n';
  });
  t.same(b, { text, hash });
  t.same(chainBatch([], 0, TS, GENESIS_PREV), { text: '', hash: GENESIS_PREV });
});

t.test('the worker writes the chained batch at its offset and answers the head', async (t) => {
  const dir = tempDir(t);
  const o = new AuditWriteOffload();
  t.teardown(() => o.close());
  t.equal(await o.ready(), true, 'ready');
  t.equal(o.usable, true);
  const path = join(dir, 'f');
  // Reserved space, as the writer keeps it: the batches overwrite zeros at their offsets.
  writeFileSync(path, Buffer.alloc(64 * 1024));
  const fd = openSync(path, 'r+');
  t.teardown(() => closeSync(fd));
  const want = chainBatch(bodies, 0, TS, GENESIS_PREV);
  const res = await o.write(fd, bodies, 0, TS, GENESIS_PREV, 0);
  t.same(res, { hash: want.hash, bytes: Buffer.byteLength(want.text) });
  const next = chainBatch(bodies.slice(0, 2), 5, TS, want.hash);
  await o.write(fd, bodies.slice(0, 2), 5, TS, want.hash, res.bytes);
  const data = readFileSync(path);
  t.equal(data.length, 64 * 1024, 'written inside the reserved space');
  const end = res.bytes + Buffer.byteLength(next.text);
  t.equal(data.subarray(0, end).toString('utf8'), want.text + next.text, 'in order, each at its offset');
  t.ok(
    data.subarray(end).every((b) => b === 0),
    'the rest still zeros',
  );
  t.equal(o.inflight, 0);
});

t.test('an I/O error is an answer with the errno name; the worker stays usable', async (t) => {
  const dir = tempDir(t);
  const o = new AuditWriteOffload();
  t.teardown(() => o.close());
  await o.ready();
  const path = join(dir, 'ro');
  closeSync(openSync(path, 'w'));
  const ro = openSync(path, 'r');
  t.teardown(() => closeSync(ro));
  await t.rejects(o.write(ro, bodies, 0, TS, GENESIS_PREV, 0), { code: 'EBADF' });
  t.equal(o.usable, true);
  const fd = openSync(join(dir, 'ok'), 'a');
  t.teardown(() => closeSync(fd));
  t.ok((await o.write(fd, bodies, 0, TS, GENESIS_PREV, 0)).bytes > 0, 'next job fine');
});

t.test('a worker that dies fails its job and refuses new ones', async (t) => {
  const dir = tempDir(t);
  const failures: string[] = [];
  const o = new AuditWriteOffload((why) => failures.push(why));
  await o.ready();
  const fd = openSync(join(dir, 'f'), 'a');
  t.teardown(() => closeSync(fd));
  // A segment holding the separator cannot come from the serializer; here it makes the
  // worker's unpacking throw, which ends the thread, as any bug there would.
  const bad: BodySegments = ['"a":"\u001f"', '', '', '', '"type":"x"'];
  await t.rejects(o.write(fd, [bad], 0, TS, GENESIS_PREV, 0), { code: 'WORKER' });
  t.equal(o.usable, false);
  await t.rejects(o.write(fd, bodies, 0, TS, GENESIS_PREV, 0), { code: 'WORKER' });
  t.equal(readFileSync(join(dir, 'f'), 'utf8'), '', 'nothing written');
  await o.close();
  t.same(failures, ['error'], 'reported once, as a failure');
});

t.test('close stops the worker', async (t) => {
  const failures: string[] = [];
  const o = new AuditWriteOffload((why) => failures.push(why));
  await o.ready();
  await o.close();
  t.same(failures, [], 'a close is not a failure');
  t.equal(o.usable, false);
  await t.rejects(o.write(1, bodies, 0, TS, GENESIS_PREV, 0), { code: 'WORKER' });
});

/** Appends `n` records in bursts of `burst`, all at once within a burst. */
async function appendBursts(
  w: Awaited<ReturnType<typeof openWriter>>,
  n: number,
  burst: number,
  from = 0,
): Promise<void> {
  for (let i = from; i < from + n; i += burst) {
    const len = Math.min(burst, from + n - i);
    await Promise.all(Array.from({ length: len }, (_, j) => w.append(request(i + j))));
  }
}

t.test('the default writer hands caller batches to the worker; the chain verifies', async (t) => {
  const dir = tempDir(t);
  const w = await openWriter(dir);
  // Batches before the worker is ready are built on the loop: some here, then none.
  await appendBursts(w, 40, 20);
  t.equal(await w.offloadReady(), true);
  await appendBursts(w, 360, 40, 40);
  const s = w.stats();
  t.ok(s.offloadedBatches > 0, `offloaded ${s.offloadedBatches} of ${s.batches} batches`);
  await w.close();
  const report = await verifyAuditDir(dir);
  t.equal(report.ok, true, JSON.stringify(report.firstError));
  const reqs = readRecords(dir).filter((r) => r.type === 'request');
  t.equal(reqs.length, 400);
  t.same(
    reqs.map((r) => r.requestId),
    Array.from({ length: 400 }, (_, i) => `req-${i}`),
    'every record, in append order',
  );
  // Checkpoints by count still land between offloaded batches.
  const w2 = await openWriter(tempDir(t), { checkpointEveryRecords: 50 });
  await w2.offloadReady();
  await appendBursts(w2, 300, 30);
  t.ok(w2.stats().offloadedBatches > 0);
  t.ok(w2.stats().checkpoints >= 5, `${w2.stats().checkpoints} checkpoints`);
  await w2.close();
});

t.test('an injected file system, or offload: false, keeps every batch on the event loop', async (t) => {
  for (const opts of [{ fs: new FaultyFs() }, { offload: false }]) {
    const dir = tempDir(t);
    const w = await openWriter(dir, opts);
    t.equal(await w.offloadReady(), false);
    await appendBursts(w, 100, 20);
    t.equal(w.stats().offloadedBatches, 0, Object.keys(opts)[0]!);
    await w.close();
    t.equal((await verifyAuditDir(dir)).ok, true);
  }
});

/** The descriptor this process holds on `file`. */
function fdOf(file: string): number {
  for (const n of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${n}`) === file) return Number(n);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no descriptor for ${file}`);
}

t.test('a failed offloaded write fails closed, then the writer recovers', async (t) => {
  const dir = tempDir(t);
  const w = await openWriter(dir);
  await w.offloadReady();
  await appendBursts(w, 60, 20);
  t.ok(w.stats().offloadedBatches > 0, 'offloading');
  const before = w.stats().offloadedBatches;
  // Pull the file out from under the worker: its next write gets EBADF.
  closeSync(fdOf(join(dir, auditFiles(dir).at(-1)!)));
  await t.rejects(w.append(request(1000)), { code: 'AUDIT_UNAVAILABLE', kind: 'EBADF' });
  t.equal(w.healthy(), false);
  await t.rejects(w.append(request(1001)), { code: 'AUDIT_UNAVAILABLE' }, 'refused while unhealthy');
  await new Promise<void>((resolve) => w.once('health', () => resolve()));
  t.equal(w.healthy(), true, 'recovered');
  await appendBursts(w, 60, 20);
  t.ok(w.stats().offloadedBatches > before, 'offloading again in the new file');
  await w.close();
  const report = await verifyAuditDir(dir);
  t.equal(report.ok, true, JSON.stringify(report.firstError));
  const types = readRecords(dir).map((r) => r.type);
  t.ok(types.includes('resume'), 'the outage is in the chain');
  t.notOk(
    readRecords(dir).some((r) => r.requestId === 'req-1000' || r.requestId === 'req-1001'),
    'refused records were never written',
  );
});
