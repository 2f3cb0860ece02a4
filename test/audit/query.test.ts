import t from 'tap';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatAuditRecord, searchAudit, tailAudit } from '../../src/audit/query.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { auditFiles, openWriter, readRecords, request, tempDir } from './fixtures.js';

async function collect(gen: AsyncGenerator<AuditRecord>): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const r of gen) out.push(r);
  return out;
}

async function makeLog(t: Parameters<typeof tempDir>[0]): Promise<string> {
  const dir = tempDir(t);
  const w = await openWriter(dir, { maxFileBytes: 2000 });
  for (let i = 0; i < 20; i++) {
    await w.append(
      request(
        i,
        i === 7
          ? {
              context: { upstreamRequestId: 'up-7' },
              decision: { allowed: false, rule: 'deny:default' },
              result: { code: 'PERMISSION_DENIED' },
            }
          : {},
      ),
    );
  }
  await w.append({ type: 'key-job', job: 'rotate', key: { name: 'key-0', version: 2 }, status: 'succeeded' });
  await w.close();
  return dir;
}

t.test('tail returns the last n records across files, oldest first', async (t) => {
  const dir = await makeLog(t);
  t.ok(auditFiles(dir).length > 2);
  const all = readRecords(dir);
  const last = await collect(tailAudit(dir, 12));
  t.same(
    last.map((r) => r.seq),
    all.slice(-12).map((r) => r.seq),
  );
  t.equal((await collect(tailAudit(dir, 100000))).length, all.length);
  t.same(await collect(tailAudit(dir, 0)), []);
  t.same(await collect(tailAudit(dir, -1)), []);
});

t.test('tail skips a partial last line', async (t) => {
  const dir = await makeLog(t);
  appendFileSync(join(dir, auditFiles(dir).at(-1)!), '{"seq":99');
  const last = await collect(tailAudit(dir, 1));
  t.equal(last.length, 1);
  t.equal(last[0]!.seq, readRecords(dir).at(-1)!.seq);
});

t.test('search by key, identity, request id, type and time', async (t) => {
  const dir = await makeLog(t);
  const byKey = await collect(searchAudit(dir, { key: 'key-1' }));
  t.equal(byKey.length, 10);
  t.ok(byKey.every((r) => (r.key as { name: string }).name === 'key-1'));
  const bySan = await collect(searchAudit(dir, { identity: 'spiffe://example.org/svc-0' }));
  t.equal(bySan.length, 7);
  const byFp = await collect(searchAudit(dir, { identity: 'ab'.repeat(32), type: 'request' }));
  t.equal(byFp.length, 20);
  t.same(
    (await collect(searchAudit(dir, { requestId: 'req-3' }))).map((r) => r.requestId),
    ['req-3'],
  );
  t.same(
    (await collect(searchAudit(dir, { requestId: 'up-7' }))).map((r) => r.requestId),
    ['req-7'],
    'upstream request id from the caller context',
  );
  t.same(await collect(searchAudit(dir, { requestId: 'nope' })), []);
  const jobs = await collect(searchAudit(dir, { type: 'key-job' }));
  t.equal(jobs.length, 1);
  t.equal((await collect(searchAudit(dir, { since: new Date(Date.now() + 3600_000) }))).length, 0);
  t.equal((await collect(searchAudit(dir, { until: new Date(0) }))).length, 0);
  const all = readRecords(dir);
  t.equal(
    (await collect(searchAudit(dir, { since: new Date(0), until: new Date(Date.now() + 1000) }))).length,
    all.length,
  );
});

t.test('one human line per record', async (t) => {
  const dir = await makeLog(t);
  const recs = readRecords(dir);
  const denied = recs.find((r) => r.requestId === 'req-7')!;
  t.match(
    formatAuditRecord(denied),
    /^\S+ #\d+ request data unwrapKey key=key-1@1 by=spiffe:\/\/example\.org\/svc-1 deny\(deny:default\) PERMISSION_DENIED 1\.5ms peer=127\.0\.0\.1:5000 req=req-7$/,
  );
  t.match(formatAuditRecord(recs[0]!), /start after=genesis clean$/);
  t.match(
    formatAuditRecord(recs.find((r) => r.type === 'checkpoint')!),
    /checkpoint key=\w{16} head=\d+ start$/,
  );
  t.match(formatAuditRecord(recs.find((r) => r.type === 'rotate')!), /rotate next=audit-\d{20}-/);
  t.match(formatAuditRecord(recs.find((r) => r.type === 'key-job')!), /key-job rotate key-0@2 succeeded$/);
  for (const r of recs) t.notMatch(formatAuditRecord(r), /\n/);
});
