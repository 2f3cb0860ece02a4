// Reserved space: the writer keeps zeros written ahead of its records, so durable writes
// overwrite blocks the file already has instead of growing it. What must hold: records
// land at the right offsets, readers ignore the zeros, the unused space is cut off at
// rotation and stop, a crash that leaves it (or leaves holes in the last write) is
// recovered from and verifies, and a fill that fails only means appending.
import t from 'tap';
import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { nodeAuditFs, type AuditFs } from '../../src/audit/audit-fs.js';
import { fileExtent } from '../../src/audit/files.js';
import { searchAudit, tailAudit } from '../../src/audit/query.js';
import { verifyAuditDir } from '../../src/audit/verify.js';
import { waitFor } from './daemon-process.js';
import { auditFiles, fileText, openWriter, readRecords, request, tempDir } from './fixtures.js';

const RESERVE = 64 * 1024;

/** waitFor (daemon-process.ts), failing the test when `cond` never holds. */
async function until(cond: () => boolean): Promise<void> {
  if (!(await waitFor(cond, 5000))) throw new Error('timed out');
}

/** nodeAuditFs whose fills (writes of all-zero buffers) go through `onFill` first. */
function fillsThrough(onFill: () => Promise<void>): AuditFs {
  return {
    ...nodeAuditFs,
    async write(fd, buf, offset, length, position) {
      if (buf.subarray(offset, offset + length).every((x) => x === 0)) await onFill();
      return nodeAuditFs.write(fd, buf, offset, length, position);
    },
  };
}

/** A live writer with one request record and its reserved space filled; it is never closed cleanly (a crash). */
async function crashedWithReserve(dir: string) {
  const w = await openWriter(dir, { reserveBytes: RESERVE });
  await w.append(request(1));
  await until(() => w.stats().reservedBytes > 0);
  return { w, file: auditFiles(dir)[0]!, head: w.stats().head! };
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

t.test(
  'fileExtent: records end at the first NUL; other bytes after the last line are the partial write',
  async (t) => {
    const z = (n: number) => Buffer.alloc(n);
    const b = (s: string) => Buffer.from(s);
    t.same(fileExtent(b('a\nb\n')), { complete: 4, torn: null });
    t.same(fileExtent(b('a\nb')), { complete: 2, torn: { offset: 2, length: 1 } });
    t.same(fileExtent(Buffer.concat([b('a\nb\n'), z(100)])), { complete: 4, torn: null }, 'trailing zeros');
    t.same(fileExtent(Buffer.concat([b('a\nbc'), z(10)])), { complete: 2, torn: { offset: 2, length: 2 } });
    // A hole inside the last write: everything after the last line before it is torn.
    t.same(fileExtent(Buffer.concat([b('a\n'), z(5), b('x\ny\n'), z(7)])), {
      complete: 2,
      torn: { offset: 2, length: 9 },
    });
    t.same(fileExtent(z(10)), { complete: 0, torn: null });
    t.same(fileExtent(Buffer.concat([z(3), b('x')])), { complete: 0, torn: { offset: 0, length: 4 } });
    t.same(fileExtent(Buffer.alloc(0)), { complete: 0, torn: null });
  },
);

t.test(
  'an open file has zeros ahead of its records; batches overwrite them; stop cuts them off',
  async (t) => {
    const dir = tempDir(t);
    const w = await openWriter(dir, { reserveBytes: RESERVE });
    await until(() => w.stats().reservedBytes > 0);
    const file = auditFiles(dir)[0]!;
    const path = join(dir, file);
    const reservedSize = statSync(path).size;
    t.ok(reservedSize > Buffer.byteLength(fileText(dir, file)), 'the file is longer than its records');
    t.ok(
      readFileSync(path)
        .subarray(Buffer.byteLength(fileText(dir, file)))
        .every((x) => x === 0),
      'zeros after them',
    );

    // A few batches that fit: written inside the reserved space, the size stays.
    for (let i = 0; i < 3; i++) await Promise.all([w.append(request(2 * i)), w.append(request(2 * i + 1))]);
    t.equal(statSync(path).size, reservedSize, 'no growth while the records fit');
    t.equal(readRecords(dir).filter((r) => r.type === 'request').length, 6);
    const live = await verifyAuditDir(dir);
    t.ok(live.ok, `a live file with reserved space verifies: ${JSON.stringify(live.firstError)}`);
    t.equal((await collect(tailAudit(dir, 3))).length, 3, 'tail reads records only');
    t.equal((await collect(searchAudit(dir, { requestId: 'req-5' }))).length, 1, 'search too');

    await w.close();
    const data = readFileSync(path);
    t.equal(data.indexOf(0), -1, 'no zeros left after stop');
    t.equal(data.length, Buffer.byteLength(fileText(dir, file)), 'cut to its records');
    t.ok((await verifyAuditDir(dir)).ok);
  },
);

t.test('many batches through a small reservation: fills and writes never overlap', async (t) => {
  const dir = tempDir(t);
  // ~400-byte records against 4 KiB fills: batches often reach a fill in progress and wait.
  const w = await openWriter(dir, { reserveBytes: 4096, maxFileBytes: 64 * 1024 });
  let n = 0;
  for (let burst = 0; burst < 60; burst++) {
    const size = 1 + (burst % 13);
    await Promise.all(Array.from({ length: size }, () => w.append(request(n++))));
  }
  const s = w.stats();
  await w.close();
  t.ok(s.rotations >= 1, `${s.rotations} rotation(s)`);
  const reqs = readRecords(dir).filter((r) => r.type === 'request');
  t.equal(reqs.length, n, 'every record is there');
  t.same(
    reqs.map((r) => r.requestId),
    Array.from({ length: n }, (_, i) => `req-${i}`),
    'in order',
  );
  for (const f of auditFiles(dir))
    t.equal(readFileSync(join(dir, f)).indexOf(0), -1, `${f}: cut to its records`);
  const report = await verifyAuditDir(dir);
  t.ok(report.ok, JSON.stringify(report.firstError));
});

t.test(
  'a crash leaves the zeros: the next start is unclean, declares nothing torn, and verifies',
  async (t) => {
    const dir = tempDir(t);
    // no close: the process "dies" with its reserved space in place
    const { w: w1, file, head } = await crashedWithReserve(dir);
    const w2 = await openWriter(dir, { reserveBytes: RESERVE });
    await w2.append(request(2));
    await w2.close();
    const start = readRecords(dir).find((r) => r.type === 'start' && r.seq > 0)!;
    t.equal(start.clean, false);
    t.equal(start.torn, null, 'zeros are not a partial line');
    t.same(start.from, { file, seq: head.seq, hash: head.hash });
    t.ok(readFileSync(join(dir, file)).at(-1) === 0, 'the crashed file still ends in zeros');
    const report = await verifyAuditDir(dir);
    t.ok(report.ok, JSON.stringify(report.firstError));
    await w1.close().catch(() => undefined);
  },
);

t.test(
  'a hole in the last write (blocks that never reached the disk) is declared and verifies',
  async (t) => {
    const dir = tempDir(t);
    const { w: w1, file, head } = await crashedWithReserve(dir);
    const path = join(dir, file);
    const at = Buffer.byteLength(fileText(dir, file));
    // The last write's first 100 bytes are lost (still zeros); a later complete-looking
    // line of it reached the disk. It was never acknowledged, so it must not count.
    const later = readRecords(dir).at(-1)!;
    const fd = openSync(path, 'r+');
    writeSync(fd, JSON.stringify({ ...later, seq: later.seq + 2 }) + '\n', at + 100);
    closeSync(fd);
    const crashed = await verifyAuditDir(dir);
    t.equal(crashed.firstError?.kind, 'torn-line', 'undeclared: a partial write');
    const w2 = await openWriter(dir, { reserveBytes: RESERVE });
    await w2.close();
    const start = readRecords(dir).find((r) => r.type === 'start' && r.seq > 0)!;
    t.same(
      start.from,
      { file, seq: head.seq, hash: head.hash },
      'continues after the last record before the hole',
    );
    const torn = start.torn as { offset: number; length: number };
    t.equal(torn.offset, at, 'the partial write starts where the records end');
    t.ok(torn.length > 100, 'and covers the hole and what came after it');
    const report = await verifyAuditDir(dir);
    t.ok(report.ok, JSON.stringify(report.firstError));
    await w1.close().catch(() => undefined);
  },
);

t.test('bytes after a NUL in an older file, declared by no marker, fail verification', async (t) => {
  const dir = tempDir(t);
  const w1 = await openWriter(dir, { reserveBytes: RESERVE });
  await w1.append(request(1));
  await w1.close();
  const w2 = await openWriter(dir, { reserveBytes: RESERVE });
  await w2.close();
  const first = auditFiles(dir)[0]!;
  const fd = openSync(join(dir, first), 'r+');
  const size = statSync(join(dir, first)).size;
  const junk = Buffer.concat([Buffer.alloc(8), Buffer.from('{"x":1}\n')]);
  writeSync(fd, junk, 0, junk.length, size);
  closeSync(fd);
  const report = await verifyAuditDir(dir);
  t.notOk(report.ok);
  t.equal(report.firstError?.kind, 'torn-line', JSON.stringify(report.firstError));
  t.equal(report.firstError?.file, first);
});

t.test('reserveBytes 0 appends only; a file system without truncate reserves nothing', async (t) => {
  for (const [name, opts] of [
    ['reserveBytes: 0', { reserveBytes: 0 }],
    ['no truncate', { fs: { ...nodeAuditFs, truncate: undefined } as AuditFs }],
  ] as const) {
    const dir = tempDir(t);
    const w = await openWriter(dir, opts);
    await w.append(request(1));
    await new Promise((r) => setTimeout(r, 50));
    const file = auditFiles(dir)[0]!;
    t.equal(w.stats().reservedBytes, 0, `${name}: nothing reserved`);
    t.equal(readFileSync(join(dir, file)).indexOf(0), -1, `${name}: no zeros in the open file`);
    await w.close();
  }
});

t.test('a fill that fails means appending: records stay durable, a warning says so', async (t) => {
  const dir = tempDir(t);
  const warnings: string[] = [];
  const logger = { info() {}, warn: (_o: object, m?: string) => warnings.push(m ?? ''), error() {} };
  // ENOSPC for the fills only, as when the disk has no room ahead.
  const fs = fillsThrough(() => Promise.reject(Object.assign(new Error('injected'), { code: 'ENOSPC' })));
  const w = await openWriter(dir, { fs, reserveBytes: RESERVE, logger });
  for (let i = 0; i < 5; i++) await w.append(request(i));
  t.ok(w.healthy(), 'still healthy');
  t.equal(w.stats().reservedBytes, 0);
  t.same(warnings, ['audit space could not be reserved: appending to this file'], 'one warning for the file');
  await w.close();
  t.equal(readRecords(dir).filter((r) => r.type === 'request').length, 5);
  t.ok((await verifyAuditDir(dir)).ok);
});

t.test(
  'a batch waiting for a hung fill times out, fails closed, and recovers when the disk answers',
  async (t) => {
    const dir = tempDir(t);
    let hang = false;
    const released: (() => void)[] = [];
    // Fills hang while `hang` is set, as on a disk that stops answering.
    const fs = fillsThrough(() => (hang ? new Promise<void>((r) => released.push(r)) : Promise.resolve()));
    const w = await openWriter(dir, { fs, reserveBytes: 8192, writeTimeoutMs: 200 });
    await until(() => w.stats().reservedBytes > 0);
    hang = true;
    // Enough records to reach the next fill, which hangs: the batch that would write into
    // it waits, and its write timeout fails it closed.
    let refused = 0;
    for (let i = 0; i < 200 && refused === 0; i++) {
      await w.append(request(i)).catch(() => refused++);
    }
    t.equal(refused, 1, 'a call was refused');
    t.notOk(w.healthy(), 'unhealthy while the disk hangs');
    t.equal(w.stats().lastErrorKind, 'TIMEOUT');
    hang = false;
    for (const r of released.splice(0)) r();
    await until(() => w.healthy());
    await w.append(request(1000));
    await w.close();
    const report = await verifyAuditDir(dir);
    t.ok(report.ok, JSON.stringify(report.firstError));
    t.equal(readRecords(dir).filter((r) => r.type === 'resume').length, 1, 'one resume marker');
  },
);
