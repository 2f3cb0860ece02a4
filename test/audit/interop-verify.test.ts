// The README's description of the chain is enough to verify it without hyokd: a verifier
// written from it in Python (test/interop/audit_verify.py, python3-cryptography) accepts a
// real log (HSM-signed checkpoints, a signing-key rotation, file rotations, a restart)
// and finds an edited record and a re-hashed rewrite.
import t from 'tap';
import { HsmAuditSigner } from '../../src/audit/hsm-signer.js';
import { verifyAuditDir } from '../../src/audit/verify.js';
import { AuditWriter } from '../../src/audit/writer.js';
import { runPython } from '../helpers/python.js';
import { createTestToken } from '../helpers/softhsm.js';
import { auditFiles, readLines, readRecords, rehashChain, request, tempDir, writeLines } from './fixtures.js';

interface Verdict {
  ok: boolean;
  records?: number;
  checkpoints?: number;
  keys?: string[];
  file?: string;
  line?: number;
  problem?: string;
}

const pythonVerify = (dir: string) => runPython<Verdict>('audit_verify.py', { args: [dir] });

const token = await createTestToken('audit-interop');
t.teardown(() => token.cleanup());
const hsm = await token.open({ sessions: 1 });
t.teardown(() => hsm.close());

t.test('a real log verifies in Python; an edit and a rewrite do not', async (t) => {
  const dir = tempDir(t);
  const first = await HsmAuditSigner.generate(hsm, { id: Buffer.from('audit-interop-1'), label: 'a1' });
  const second = await HsmAuditSigner.generate(hsm, { id: Buffer.from('audit-interop-2'), label: 'a2' });
  const opts = { dir, checkpointEveryRecords: 25, maxFileBytes: 16 * 1024, probeIntervalMs: 20 };
  let w = await AuditWriter.open({ ...opts, signer: first });
  const append = (from: number, n: number) =>
    Promise.all(
      Array.from({ length: n }, (_, i) =>
        w.append(
          request(from + i, {
            // Values whose JSON form a second implementation must reproduce byte for byte.
            latencyMs: (from + i) / 7,
            context: { reason: 'revue annuelle – ü ✓', upstream: `"quoted"\\${from + i}\n` },
          }),
        ),
      ),
    );
  await append(0, 60);
  await w.rotateSigner(second);
  await append(60, 60);
  await w.close();
  // A restart: the chain continues across it, with a start marker.
  w = await AuditWriter.open({ ...opts, signer: second });
  await append(120, 30);
  await w.close();

  t.ok((await verifyAuditDir(dir)).ok, 'hyokd audit verify accepts it');
  t.ok(auditFiles(dir).length >= 3, `${auditFiles(dir).length} files`);
  const verdict = await pythonVerify(dir);
  t.match(verdict, { ok: true, records: readRecords(dir).length });
  t.ok(verdict.checkpoints! >= 8, `${verdict.checkpoints} checkpoints verified`);
  t.same(verdict.keys, [first.keyId, second.keyId].sort(), 'both signing keys came from the chain');

  // An edited record: its hash no longer matches.
  const files = auditFiles(dir);
  const target = files[1]!;
  const lines = readLines(dir, target);
  const at = lines.findIndex((l) => l.includes('"type":"request"'));
  lines[at] = lines[at]!.replace('"code":"OK"', '"code":"PERMISSION_DENIED"');
  writeLines(dir, target, lines);
  t.match(await pythonVerify(dir), { ok: false, file: target, line: at + 1, problem: 'hash' });

  // The same edit with every hash and link recomputed: only the signatures tell.
  rehashChain(dir);
  const rewritten = await pythonVerify(dir);
  t.match(rewritten, { ok: false, problem: 'signature' });
  t.equal((await verifyAuditDir(dir)).ok, false, 'and hyokd agrees');
});
