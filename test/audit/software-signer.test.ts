import t from 'tap';
import { SoftwareAuditSigner } from '../../src/audit/software-signer.js';
import {
  checkpointDigest,
  keyIdForSpki,
  publicKeyFromSpki,
  verifyCheckpointSignature,
} from '../../src/audit/signer.js';

t.test('signs a digest so that node:crypto verifies it over the preimage', async (t) => {
  const s = new SoftwareAuditSigner();
  const key = publicKeyFromSpki(s.publicKeySpkiDer());
  const head = 'ab'.repeat(32);
  const sig = await s.sign(checkpointDigest(s.keyId, 5, head));
  t.equal(sig.length, 64, 'raw r||s');
  t.ok(verifyCheckpointSignature(key, s.keyId, 5, head, sig));
  t.notOk(verifyCheckpointSignature(key, s.keyId, 6, head, sig), 'other seq');
  t.notOk(verifyCheckpointSignature(key, s.keyId, 5, 'cd'.repeat(32), sig), 'other head');
  const flipped = Buffer.from(sig);
  flipped[40] ^= 1;
  t.notOk(verifyCheckpointSignature(key, s.keyId, 5, head, flipped), 'flipped bit');
  t.notOk(verifyCheckpointSignature(key, s.keyId, 5, head, sig.subarray(0, 63)), 'short');
  t.equal(s.keyId, keyIdForSpki(s.publicKeySpkiDer()));
});

t.test('another key does not verify', async (t) => {
  const a = new SoftwareAuditSigner();
  const b = new SoftwareAuditSigner();
  t.not(a.keyId, b.keyId);
  const sig = await a.sign(checkpointDigest(a.keyId, 1, 'x'));
  t.notOk(verifyCheckpointSignature(publicKeyFromSpki(b.publicKeySpkiDer()), a.keyId, 1, 'x', sig));
});

t.test('rejects a digest that is not 32 bytes', async (t) => {
  await t.rejects(new SoftwareAuditSigner().sign(Buffer.alloc(31)));
});
