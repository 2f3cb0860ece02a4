// Every kind of tampering with an audit directory is caught and named.
import t from 'tap';
import { appendFileSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalJson, recordHash } from '../../src/audit/canonical.js';
import { checkpointDigest } from '../../src/audit/signer.js';
import { SoftwareAuditSigner } from '../../src/audit/software-signer.js';
import { verifyAuditDir } from '../../src/audit/verify.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { auditFiles, openWriter, readLines, rehashChain, request, tempDir, writeLines } from './fixtures.js';

/** Two runs: the first rotates through several files, the second restarts after it. */
async function makeLog(t: Parameters<typeof tempDir>[0]): Promise<string> {
  const dir = tempDir(t);
  const w1 = await openWriter(dir, { maxFileBytes: 2500 });
  for (let i = 0; i < 24; i++) await w1.append(request(i));
  await w1.close();
  const w2 = await openWriter(dir);
  for (let i = 24; i < 30; i++) await w2.append(request(i));
  await w2.close();
  return dir;
}

/** Index of the first line in `file` whose record matches `pred`. */
function findLine(dir: string, file: string, pred: (r: AuditRecord) => boolean): number {
  return readLines(dir, file).findIndex((l) => pred(JSON.parse(l) as AuditRecord));
}

const isRequest = (r: AuditRecord): boolean => r.type === 'request';

t.test('the untouched log verifies', async (t) => {
  const dir = await makeLog(t);
  const files = auditFiles(dir);
  t.ok(files.length >= 4, `${files.length} files`);
  const r = await verifyAuditDir(dir);
  t.ok(r.ok, JSON.stringify(r.firstError));
  t.equal(r.firstError, undefined);
  t.equal(r.files, files.length);
  t.ok(r.checkpoints >= files.length);
});

t.test('modified: an edited record no longer matches its hash', async (t) => {
  const dir = await makeLog(t);
  const file = auditFiles(dir)[1]!;
  const lines = readLines(dir, file);
  const i = findLine(dir, file, isRequest);
  const rec = JSON.parse(lines[i]!) as AuditRecord;
  lines[i] = lines[i]!.replace('"allowed":true', '"allowed":false');
  t.not(lines[i], canonicalJson(rec));
  writeLines(dir, file, lines);
  const r = await verifyAuditDir(dir);
  t.notOk(r.ok);
  t.same(
    r.firstError && {
      file: r.firstError.file,
      line: r.firstError.line,
      seq: r.firstError.seq,
      kind: r.firstError.kind,
    },
    {
      file,
      line: i + 1,
      seq: rec.seq,
      kind: 'modified',
    },
  );
});

t.test('modified: a line that is not JSON', async (t) => {
  const dir = await makeLog(t);
  const file = auditFiles(dir)[0]!;
  const lines = readLines(dir, file);
  lines[3] = 'garbage';
  writeLines(dir, file, lines);
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'modified');
  t.equal(r.firstError?.line, 4);
});

t.test('an edit with the whole chain re-hashed is caught by the next checkpoint signature', async (t) => {
  const dir = await makeLog(t);
  const file = auditFiles(dir)[1]!;
  const lines = readLines(dir, file);
  const i = findLine(dir, file, isRequest);
  lines[i] = lines[i]!.replace('"allowed":true', '"allowed":false');
  writeLines(dir, file, lines);
  rehashChain(dir);
  const r = await verifyAuditDir(dir);
  t.notOk(r.ok);
  t.equal(r.firstError?.kind, 'bad-signature');
  t.equal(r.firstError?.file, file);
  t.ok(r.firstError!.line! > i + 1);
});

t.test('deleted: a record removed from the middle of a file', async (t) => {
  const dir = await makeLog(t);
  const file = auditFiles(dir)[1]!;
  const lines = readLines(dir, file);
  const i = findLine(dir, file, isRequest);
  const gone = JSON.parse(lines[i]!) as AuditRecord;
  lines.splice(i, 1);
  writeLines(dir, file, lines);
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'deleted');
  t.equal(r.firstError?.seq, gone.seq + 1);
  t.match(r.firstError?.message, String(gone.seq));
});

t.test('reordered: two records swapped', async (t) => {
  const dir = await makeLog(t);
  const file = auditFiles(dir)[1]!;
  const lines = readLines(dir, file);
  const i = findLine(dir, file, isRequest);
  [lines[i], lines[i + 1]] = [lines[i + 1]!, lines[i]!];
  writeLines(dir, file, lines);
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'reordered', JSON.stringify(r.firstError));
  t.equal(r.firstError?.line, i + 1);
});

t.test('truncated: a file cut at a line boundary', async (t) => {
  const dir = await makeLog(t);
  const file = auditFiles(dir)[1]!;
  const lines = readLines(dir, file);
  writeLines(dir, file, lines.slice(0, lines.length - 3));
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'truncated');
  t.equal(r.firstError?.file, file);
});

t.test('truncated: a file cut in the middle of a line', async (t) => {
  const dir = await makeLog(t);
  const file = auditFiles(dir)[0]!;
  const size = readFileSync(join(dir, file)).length;
  truncateSync(join(dir, file), size - 40);
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'truncated');
  t.equal(r.firstError?.file, file);
});

t.test('missing-file: a rotated file dropped from the middle', async (t) => {
  const dir = await makeLog(t);
  const files = auditFiles(dir);
  rmSync(join(dir, files[1]!));
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'missing-file');
  t.equal(r.firstError?.file, files[1]);
});

t.test('missing-file: the oldest file dropped', async (t) => {
  const dir = await makeLog(t);
  rmSync(join(dir, auditFiles(dir)[0]!));
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'missing-file');
  const pruned = await verifyAuditDir(dir, { allowPrunedHead: true });
  t.ok(pruned.ok, JSON.stringify(pruned.firstError));
  t.match(pruned.warnings.join('\n'), /not checked \(key record pruned\)/);
  const { signer } = await import('./fixtures.js');
  const anchored = await verifyAuditDir(dir, {
    allowPrunedHead: true,
    trustedKeys: [signer.publicKeySpkiDer()],
  });
  t.ok(anchored.ok, JSON.stringify(anchored.firstError));
  t.notMatch(anchored.warnings.join('\n'), /not checked/, 'with the trusted key every checkpoint is checked');
});

t.test('missing-file: the first file of a later run dropped', async (t) => {
  const dir = await makeLog(t);
  // Split the second run over two files so that dropping its first file leaves a later one.
  const w3 = await openWriter(dir, { maxFileBytes: 1500 });
  for (let i = 0; i < 8; i++) await w3.append(request(i));
  await w3.close();
  const files = auditFiles(dir);
  const firstOfRun3 = files.find((f) => {
    const first = JSON.parse(readLines(dir, f)[0]!) as AuditRecord;
    return (
      first.type === 'start' && (first.from as { seq: number } | null)?.seq !== undefined && f !== files[0]
    );
  });
  const starts = files.filter((f) => (JSON.parse(readLines(dir, f)[0]!) as AuditRecord).type === 'start');
  t.equal(starts.length, 3);
  t.ok(firstOfRun3);
  rmSync(join(dir, starts[2]!));
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'missing-file');
});

t.test('bad-signature: a checkpoint signature replaced', async (t) => {
  const dir = await makeLog(t);
  const file = auditFiles(dir)[1]!;
  const lines = readLines(dir, file);
  const i = findLine(dir, file, (r) => r.type === 'checkpoint');
  const rec = JSON.parse(lines[i]!) as AuditRecord;
  // A valid signature by another key over the same head, under the recorded key id.
  const other = new SoftwareAuditSigner();
  const sig = await other.sign(checkpointDigest(rec.keyId as string, rec.seq - 1, rec.prev));
  rec.sig = sig.toString('base64');
  rec.hash = recordHash(rec);
  lines[i] = canonicalJson(rec);
  writeLines(dir, file, lines);
  rehashChain(dir);
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'bad-signature');
  t.equal(r.firstError?.line, i + 1);
  t.equal(r.firstError?.seq, rec.seq);
});

t.test('bad-signature: a checkpoint by a key never recorded', async (t) => {
  const dir = await makeLog(t);
  const file = auditFiles(dir)[1]!;
  const lines = readLines(dir, file);
  const i = findLine(dir, file, (r) => r.type === 'checkpoint');
  const rec = JSON.parse(lines[i]!) as AuditRecord;
  const other = new SoftwareAuditSigner();
  rec.keyId = other.keyId;
  rec.sig = (await other.sign(checkpointDigest(other.keyId, rec.seq - 1, rec.prev))).toString('base64');
  lines[i] = canonicalJson(rec);
  writeLines(dir, file, lines);
  rehashChain(dir);
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'bad-signature');
  t.match(r.firstError?.message, /unknown key/);
});

t.test('untrusted-key: an attacker re-signs the whole chain with a key of their own', async (t) => {
  const dir = await makeLog(t);
  const { signer } = await import('./fixtures.js');
  const evil = new SoftwareAuditSigner();
  // Rewrite every key record and checkpoint with the attacker's key, in chain order.
  let prev: string | null = null;
  for (const f of auditFiles(dir)) {
    const out: string[] = [];
    for (const l of readLines(dir, f)) {
      const r = JSON.parse(l) as AuditRecord;
      if (prev !== null) r.prev = prev;
      if ((r.type === 'start' || r.type === 'resume') && r.from) (r.from as { hash: string }).hash = prev!;
      if (r.type === 'key') {
        r.keyId = evil.keyId;
        r.spki = evil.publicKeySpkiDer().toString('base64');
      }
      if (r.type === 'checkpoint') {
        r.keyId = evil.keyId;
        r.head = { seq: r.seq - 1, hash: r.prev };
        r.sig = (await evil.sign(checkpointDigest(evil.keyId, r.seq - 1, r.prev))).toString('base64');
      }
      r.hash = recordHash(r);
      prev = r.hash;
      out.push(canonicalJson(r));
    }
    writeLines(dir, f, out);
  }
  const selfConsistent = await verifyAuditDir(dir);
  t.ok(selfConsistent.ok, JSON.stringify(selfConsistent.firstError));
  const r = await verifyAuditDir(dir, { trustedKeys: [signer.publicKeySpkiDer()] });
  t.equal(r.firstError?.kind, 'untrusted-key');
});

t.test('foreign-file: a stray file in the audit directory', async (t) => {
  const dir = await makeLog(t);
  writeFileSync(join(dir, 'notes.txt'), 'hello\n');
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'foreign-file');
  t.equal(r.firstError?.file, 'notes.txt');
});

t.test('foreign-file: a well-named file from another log', async (t) => {
  const dir = await makeLog(t);
  const other = tempDir(t);
  const w = await openWriter(other);
  for (let i = 0; i < 30; i++) await w.append(request(100 + i));
  await w.close();
  // Give the other log's file a name that sorts after this log's second file.
  const src = auditFiles(other)[0]!;
  const files = auditFiles(dir);
  const [, seqText] = /^audit-(\d{20})-/.exec(files[1]!)!;
  const name = `audit-${String(Number(seqText) + 1).padStart(20, '0')}-20200101T000000Z.jsonl`;
  renameSync(join(other, src), join(dir, name));
  const r = await verifyAuditDir(dir);
  t.notOk(r.ok);
  t.equal(r.firstError?.kind, 'foreign-file');
  t.equal(r.firstError?.file, name);
});

t.test('torn-line: junk appended to the end of an older file', async (t) => {
  const dir = await makeLog(t);
  const file = auditFiles(dir)[1]!;
  appendFileSync(join(dir, file), '{"seq":');
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'truncated');
  t.equal(r.firstError?.file, file);
});

t.test('a missing or unreadable directory is reported, not thrown', async (t) => {
  const r = await verifyAuditDir(join(tempDir(t), 'nope'));
  t.notOk(r.ok);
  t.equal(r.firstError?.kind, 'unreadable');
});

t.test('lost+found (a dedicated file system) is tolerated; the report formats in one line', async (t) => {
  const dir = await makeLog(t);
  const { mkdirSync } = await import('node:fs');
  const { formatVerifyReport } = await import('../../src/audit/verify.js');
  mkdirSync(join(dir, 'lost+found'));
  const ok = await verifyAuditDir(dir);
  t.ok(ok.ok);
  t.match(formatVerifyReport(ok), /^OK: \d+ records, \d+ files, \d+ checkpoints, head #\d+ [0-9a-f]{16}$/);
  writeFileSync(join(dir, 'x.jsonl'), '');
  const bad = await verifyAuditDir(dir);
  t.match(formatVerifyReport(bad), /^FAILED foreign-file at x\.jsonl: /);
});

t.test('misnamed: a file renamed in place is caught by the start marker that names it', async (t) => {
  const dir = tempDir(t);
  for (let run = 0; run < 2; run++) {
    const w = await openWriter(dir);
    await w.append(request(run));
    await w.close();
  }
  const [first] = auditFiles(dir);
  const renamed = first!.replace(/T\d{6}Z/, 'T000000Z');
  t.not(renamed, first);
  renameSync(join(dir, first!), join(dir, renamed));
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'misnamed');
  t.equal(r.firstError?.file, renamed);
});

t.test('missing-file: a renamed rotated file no longer matches its rotate record', async (t) => {
  const dir = await makeLog(t);
  const second = auditFiles(dir)[1]!;
  renameSync(join(dir, second), join(dir, second.replace(/T\d{6}Z/, 'T000000Z')));
  const r = await verifyAuditDir(dir);
  t.equal(r.firstError?.kind, 'missing-file');
  t.equal(r.firstError?.file, second);
});
