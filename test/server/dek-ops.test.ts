// prepareUnwrap on its own: the envelope digest exists only for calls that are recorded.
import t from 'tap';
import { digestForAudit } from '../../src/audit/index.js';
import { encodeEnvelope } from '../../src/envelope.js';
import { prepareUnwrap } from '../../src/server/dek-ops.js';

const limits = { maxBatchItems: 4, maxDekBytes: 32, maxAadBytes: 64, maxContextEntries: 4 };
const blob = encodeEnvelope({
  keyName: 'k',
  keyVersion: 3,
  iv: Buffer.alloc(12, 1),
  tag: Buffer.alloc(16, 2),
  ciphertext: Buffer.alloc(32, 3),
});

t.test('prepareUnwrap: digest of the envelope when audited, none when not', async (t) => {
  const on = prepareUnwrap({ envelope: blob, aad: Buffer.from('a') }, limits, true);
  t.equal(on.digest, digestForAudit(blob));
  t.match(on.digest, /^[0-9a-f]+$/);
  const off = prepareUnwrap({ envelope: blob, aad: Buffer.from('a') }, limits, false);
  t.equal(off.digest, null);
  // Everything else is parsed the same either way.
  t.same({ ...off, digest: on.digest }, on);
});

t.test('prepareUnwrap: bad input is refused whether or not the call is audited', async (t) => {
  for (const audited of [true, false]) {
    t.throws(() => prepareUnwrap({}, limits, audited), { code: 'MALFORMED_ENVELOPE' });
    t.throws(() => prepareUnwrap({ envelope: blob.subarray(0, 20) }, limits, audited), {
      code: 'MALFORMED_ENVELOPE',
    });
    t.throws(() => prepareUnwrap({ envelope: blob, aad: Buffer.alloc(65) }, limits, audited), {
      code: 'AAD_SIZE',
    });
  }
});
