/* eslint-disable @typescript-eslint/no-explicit-any -- messages of dynamically loaded gRPC clients are untyped */
// Bad envelopes, bad sizes, unknown keys, denied callers: each gets the right status and
// reason, nothing crashes, and the server keeps serving. Rotation keeps old envelopes
// readable.
import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { tailAudit } from '../../src/audit/index.js';
import { decodeEnvelope, encodeEnvelope, MAX_ENVELOPE_BYTES } from '../../src/envelope.js';
import { issueClientCert } from '../../src/pki/index.js';
import { call, OTHER_ID, reasonOf, settle, startHarness } from './fixtures.js';

const h = await startHarness();
t.teardown(() => h.close());
const c = h.client();

const dek = randomBytes(32);
const aad = Buffer.from('order-42');
const { envelope } = await call<{ envelope: Buffer }>(c, 'Wrap', { keyName: 'demo', plaintextDek: dek, aad });

async function unwrapFails(t: Test, env: Buffer, code: number, reason: string, a: Buffer = aad) {
  const [e] = await settle(call(c, 'Unwrap', { envelope: env, aad: a }));
  t.equal(e?.code, code, `status ${code}`);
  t.equal(reasonOf(e), reason);
  return e;
}

t.test(
  'malformed, empty, oversized and truncated envelopes: INVALID_ARGUMENT MALFORMED_ENVELOPE',
  async (t) => {
    await unwrapFails(t, Buffer.from('definitely not an envelope'), 3, 'MALFORMED_ENVELOPE');
    await unwrapFails(t, Buffer.alloc(0), 3, 'MALFORMED_ENVELOPE');
    await unwrapFails(
      t,
      Buffer.concat([envelope, Buffer.alloc(MAX_ENVELOPE_BYTES)]),
      3,
      'MALFORMED_ENVELOPE',
    );
    for (const cut of [3, 8, 20, envelope.length - 1]) {
      await unwrapFails(t, envelope.subarray(0, cut), 3, 'MALFORMED_ENVELOPE');
    }
    const e = await unwrapFails(t, Buffer.concat([envelope, Buffer.from([0])]), 3, 'MALFORMED_ENVELOPE');
    t.match(e?.details, /trailing/, 'the message says what is wrong');
  },
);

t.test('bit flips in IV, tag or ciphertext: INVALID_ARGUMENT INVALID_CIPHERTEXT', async (t) => {
  const env = decodeEnvelope(envelope);
  const ivAt = env.header.length;
  for (const at of [ivAt + 1, ivAt + 12 + 3, envelope.length - 1]) {
    const bad = Buffer.from(envelope);
    bad[at]! ^= 0x01;
    await unwrapFails(t, bad, 3, 'INVALID_CIPHERTEXT');
  }
});

t.test('wrong AAD: INVALID_CIPHERTEXT; oversized AAD: AAD_SIZE', async (t) => {
  await unwrapFails(t, envelope, 3, 'INVALID_CIPHERTEXT', Buffer.from('order-43'));
  await unwrapFails(t, envelope, 3, 'INVALID_CIPHERTEXT', Buffer.alloc(0));
  await unwrapFails(t, envelope, 3, 'AAD_SIZE', Buffer.alloc(8193));
});

t.test('cross-key: a blob relabelled to another key or version does not open', async (t) => {
  const other = await call<{ envelope: Buffer }>(c, 'Wrap', { keyName: 'other', plaintextDek: dek, aad });
  const o = decodeEnvelope(other.envelope);
  const relabelled = encodeEnvelope({
    keyName: 'demo',
    keyVersion: 1,
    iv: o.iv,
    tag: o.tag,
    ciphertext: o.ciphertext,
  });
  await unwrapFails(t, relabelled, 3, 'INVALID_CIPHERTEXT');
  const d = decodeEnvelope(envelope);
  const wrongVersion = encodeEnvelope({
    keyName: 'demo',
    keyVersion: 9,
    iv: d.iv,
    tag: d.tag,
    ciphertext: d.ciphertext,
  });
  await unwrapFails(t, wrongVersion, 5, 'VERSION_NOT_FOUND');
});

t.test('unknown key: NOT_FOUND KEY_NOT_FOUND; bad key name: KEY_NAME_INVALID', async (t) => {
  const d = decodeEnvelope(envelope);
  const ghost = encodeEnvelope({
    keyName: 'ghost',
    keyVersion: 1,
    iv: d.iv,
    tag: d.tag,
    ciphertext: d.ciphertext,
  });
  await unwrapFails(t, ghost, 5, 'KEY_NOT_FOUND');
  const [e] = await settle(call(c, 'Wrap', { keyName: 'ghost', plaintextDek: dek }));
  t.equal(reasonOf(e), 'KEY_NOT_FOUND');
  const [e2] = await settle(call(c, 'Wrap', { keyName: '../etc', plaintextDek: dek }));
  t.equal(e2?.code, 3);
  t.equal(reasonOf(e2), 'KEY_NAME_INVALID');
});

t.test('DEK sizes, request id and context are bounded', async (t) => {
  for (const n of [0, 15, 33, 100]) {
    const [e] = await settle(call(c, 'Wrap', { keyName: 'demo', plaintextDek: randomBytes(n) }));
    t.equal(reasonOf(e), 'DEK_SIZE', `${n}-byte DEK refused`);
  }
  const [e1] = await settle(call(c, 'Unwrap', { envelope, aad, requestId: 'has space' }));
  t.equal(reasonOf(e1), 'INVALID_REQUEST');
  const context = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
  const [e2] = await settle(call(c, 'Unwrap', { envelope, aad, context }));
  t.equal(reasonOf(e2), 'INVALID_REQUEST');
  t.match(e2?.details, /context has 17 entries/);
});

t.test('a message above the size limit is refused by the transport', async (t) => {
  const [e] = await settle(call(c, 'Echo', { payload: Buffer.alloc(5 * 1024 * 1024) }));
  t.equal(e?.code, 8, 'RESOURCE_EXHAUSTED');
  const ok = await call<{ payload: Buffer }>(c, 'Echo', { payload: Buffer.from('still serving') });
  t.equal(ok.payload.toString(), 'still serving');
});

t.test('permission denied by policy, and the denial is audited with its rule', async (t) => {
  const otherCert = await issueClientCert(h.ca, { uri: OTHER_ID });
  const oc = h.client(otherCert);
  const [e] = await settle(call(oc, 'Unwrap', { envelope, aad, requestId: 'denied-1' }));
  t.equal(e?.code, 7);
  t.equal(reasonOf(e), 'PERMISSION_DENIED');
  const [e2] = await settle(call(oc, 'GetKey', { name: 'other' }));
  t.equal(reasonOf(e2), 'PERMISSION_DENIED', 'the grant on "other" does not include get');
  const w = await call<{ envelope: Buffer }>(oc, 'Wrap', { keyName: 'other', plaintextDek: dek });
  t.ok(w.envelope.length > 0, 'the per-key grant allows wrapKey on "other"');
  const recs: Record<string, any>[] = [];
  for await (const r of tailAudit(h.auditDir, 1000)) recs.push(r);
  const denied = recs.find((r) => r.requestId === 'denied-1');
  t.ok(denied, 'the denied call was audited');
  t.same(denied!.decision, { allowed: false, rule: 'default-deny' });
  t.equal(denied!.result.code, 'PERMISSION_DENIED');
  t.equal(denied!.identity.san, OTHER_ID);
  t.match(denied!.details.envelope, /^[0-9a-f]{16}$/, 'the envelope appears only as a digest');
});

t.test('rotation: new wraps use the new version, old envelopes still open', async (t) => {
  await h.keys.rotateKey('demo');
  await h.keys.rotateKey('demo');
  const w = await call<{ envelope: Buffer; keyVersion: number }>(c, 'Wrap', {
    keyName: 'demo',
    plaintextDek: dek,
  });
  t.equal(w.keyVersion, 3);
  const old = await call<{ plaintextDek: Buffer; keyVersion: number }>(c, 'Unwrap', { envelope, aad });
  t.same(old.plaintextDek, dek);
  t.equal(old.keyVersion, 1);
  const fresh = await call<{ plaintextDek: Buffer }>(c, 'Unwrap', { envelope: w.envelope });
  t.same(fresh.plaintextDek, dek);
  await h.keys.setKeyState('demo', false, 1);
  const [e] = await settle(call(c, 'Unwrap', { envelope, aad }));
  t.equal(e?.code, 9);
  t.equal(reasonOf(e), 'VERSION_DISABLED');
  await h.keys.setKeyState('demo', false);
  const [e2] = await settle(call(c, 'Unwrap', { envelope: w.envelope }));
  t.equal(reasonOf(e2), 'KEY_DISABLED', 'disabling takes effect on the next request');
});
