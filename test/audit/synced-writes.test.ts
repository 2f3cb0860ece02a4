// The default audit file system opens audit files O_DSYNC, so a batch is durable when its
// write returns and the writer skips the separate fsync; a file system without that
// promise still gets one fsync per batch.
import t from 'tap';
import { constants } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { nodeAuditFs, type AuditFs } from '../../src/audit/audit-fs.js';
import { verifyAuditDir } from '../../src/audit/verify.js';
import { waitFor } from './daemon-process.js';
import { openWriter, readRecords, request, tempDir } from './fixtures.js';

/** The open flags of one of this process's descriptors, as the kernel reports them. */
async function openFlags(fd: number): Promise<number> {
  const info = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8');
  const m = /^flags:\s+([0-7]+)$/m.exec(info);
  if (!m) throw new Error(`no flags in /proc/self/fdinfo/${fd}`);
  return parseInt(m[1]!, 8);
}

t.test(
  'openWrite gives a descriptor whose writes are synchronized (O_DSYNC), at explicit offsets',
  async (t) => {
    const dir = tempDir(t);
    t.equal(nodeAuditFs.syncedWrites, true);
    const fd = await nodeAuditFs.openWrite(join(dir, 'a.jsonl'), true);
    try {
      const flags = await openFlags(fd);
      t.equal(flags & constants.O_DSYNC, constants.O_DSYNC, 'O_DSYNC set');
      // Not O_APPEND: Linux ignores pwrite's offset on an O_APPEND descriptor.
      t.equal(flags & constants.O_APPEND, 0, 'O_APPEND not set');
    } finally {
      await nodeAuditFs.close(fd);
    }
  },
);

/** nodeAuditFs with fsync counted, claiming synced writes or not. */
function countingFs(syncedWrites: boolean): AuditFs & { fsyncs: number } {
  const fs = {
    ...nodeAuditFs,
    syncedWrites,
    fsyncs: 0,
    async fsync(fd: number) {
      fs.fsyncs++;
      await nodeAuditFs.fsync(fd);
    },
  };
  return fs;
}

t.test('with synced writes a batch is acknowledged without an fsync', async (t) => {
  const dir = tempDir(t);
  const fs = countingFs(true);
  const w = await openWriter(dir, { fs });
  const before = w.stats();
  await Promise.all(Array.from({ length: 50 }, (_, i) => w.append(request(i))));
  const s = w.stats();
  t.ok(s.batches > before.batches, `${s.batches - before.batches} batch(es) written`);
  t.equal(fs.fsyncs, 0, 'no fsync call');
  await w.close();
  t.equal(readRecords(dir).filter((r) => r.type === 'request').length, 50);
  t.ok((await verifyAuditDir(dir)).ok);
});

t.test('without synced writes every batch is fsync’d before it is acknowledged', async (t) => {
  const dir = tempDir(t);
  const fs = countingFs(false);
  const w = await openWriter(dir, { fs });
  // The first zero fill of reserved space ends with an fsync of its own, off the write
  // path: let it settle so that only the batches' fsyncs are counted below.
  if (!(await waitFor(() => w.stats().reservedBytes > 0, 5000))) t.fail('the first zero fill never finished');
  const startup = fs.fsyncs;
  t.ok(startup >= 1, 'the start records were fsync’d');
  const before = w.stats();
  await Promise.all(Array.from({ length: 50 }, (_, i) => w.append(request(i))));
  const batches = w.stats().batches - before.batches;
  t.equal(fs.fsyncs - startup, batches, 'one fsync per batch');
  await w.close();
  t.ok((await verifyAuditDir(dir)).ok);
});
