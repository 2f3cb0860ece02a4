// The HSM audit signer: key pair generated on the token, CKM_ECDSA over the checkpoint
// digest. Runs against the fake backend and against a real SoftHSM2 token.
import t, { type Test } from 'tap';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { createFakeBackend } from '../../src/hsm/fake-backend.js';
import type { HsmBackend } from '../../src/hsm/types.js';
import { HsmAuditSigner, spkiFromEcPoint } from '../../src/audit/hsm-signer.js';
import {
  checkpointDigest,
  keyIdForSpki,
  publicKeyFromSpki,
  verifyCheckpointSignature,
} from '../../src/audit/signer.js';
import { verifyAuditDir } from '../../src/audit/verify.js';
import { AuditWriter } from '../../src/audit/writer.js';
import { createTestToken } from '../helpers/softhsm.js';
import { readRecords, request, tempDir } from './fixtures.js';

async function signerRoundTrip(t: Test, hsm: HsmBackend): Promise<void> {
  const id = Buffer.from('audit-key-1');
  const s = await HsmAuditSigner.generate(hsm, { id, label: 'hyokd-audit' });
  t.equal(s.keyId, keyIdForSpki(s.publicKeySpkiDer()));
  const key = publicKeyFromSpki(s.publicKeySpkiDer());
  const head = 'ef'.repeat(32);
  const sig = await s.sign(checkpointDigest(s.keyId, 41, head));
  t.equal(sig.length, 64);
  t.ok(verifyCheckpointSignature(key, s.keyId, 41, head, sig));
  t.notOk(verifyCheckpointSignature(key, s.keyId, 42, head, sig));

  // The private half is sensitive and never extractable.
  const { handles } = await hsm.run({ op: 'find', cls: 'private', id });
  t.equal(handles.length, 1);
  const { attrs } = await hsm.run({ op: 'getAttributes', handle: handles[0]! });
  t.equal(attrs.sensitive, true);
  t.equal(attrs.extractable, false);
  t.equal(attrs.token, true);
  t.equal(attrs.usage.sign, true);

  const again = await HsmAuditSigner.load(hsm, id);
  t.equal(again.keyId, s.keyId, 'loading by id finds the same key');
  await t.rejects(HsmAuditSigner.load(hsm, Buffer.from('no-such-key')));
  await t.rejects(s.sign(Buffer.alloc(20)));

  const dir = tempDir(t);
  const w = await AuditWriter.open({ dir, signer: s });
  await w.append(request(1));
  await w.close();
  const report = await verifyAuditDir(dir, { trustedKeys: [s.publicKeySpkiDer()] });
  t.ok(report.ok, JSON.stringify(report.firstError));
  t.equal(report.checkpoints, 2);
  t.equal(readRecords(dir).find((r) => r.type === 'key')!.keyId, s.keyId);
}

t.test('fake backend', async (t) => {
  const hsm = await createFakeBackend();
  t.teardown(() => hsm.close());
  await signerRoundTrip(t, hsm);
});

t.test('SoftHSM2 token', async (t) => {
  const tok = await createTestToken('audit');
  const hsm = await tok.open({ sessions: 2 });
  t.teardown(async () => {
    await hsm.close();
    tok.cleanup();
  });
  await signerRoundTrip(t, hsm);
});

t.test('spkiFromEcPoint takes the DER-wrapped or the bare point, nothing else', async (t) => {
  const pub = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  const spki = pub.export({ type: 'spki', format: 'der' });
  const point = spki.subarray(spki.length - 65);
  t.same(spkiFromEcPoint(Buffer.concat([Buffer.from([0x04, 0x41]), point])), spki);
  t.same(spkiFromEcPoint(point), spki);
  t.ok(createPublicKey({ key: spkiFromEcPoint(point), format: 'der', type: 'spki' }));
  t.throws(() => spkiFromEcPoint(point.subarray(1)));
  const offCurve = Buffer.from(point);
  offCurve[64] ^= 1;
  t.throws(() => spkiFromEcPoint(offCurve), 'a point not on the curve');
});
