/* eslint-disable @typescript-eslint/no-explicit-any -- messages of dynamically loaded gRPC clients are untyped */
// Every RPC of hyok.v1 round-trips against a real server, token, store and audit log.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import t from 'tap';
import { tailAudit, type AuditRecord } from '../../src/audit/index.js';
import { unwrapRewrapped } from '../../src/rewrap.js';
import { decodeEnvelope } from '../../src/envelope.js';
import { call, reasonOf, settle, startHarness } from './fixtures.js';

const h = await startHarness();
t.teardown(() => h.close());
const c = h.client();

interface UnwrapRes {
  plaintextDek: Buffer;
  keyName: string;
  keyVersion: number;
  rewrapped: { algorithm: string; wrappedDek: Buffer; ephemeralPublicKey: Buffer } | null;
}

t.test('Wrap then Unwrap returns the same DEK, with AAD', async (t) => {
  const dek = randomBytes(32);
  const aad = Buffer.from('tenant=a');
  const w = await call<{ envelope: Buffer; keyName: string; keyVersion: number }>(c, 'Wrap', {
    keyName: 'demo',
    plaintextDek: dek,
    aad,
    requestId: 'wrap-1',
    context: { reason: 'test' },
  });
  t.equal(w.keyName, 'demo');
  t.equal(w.keyVersion, 1);
  const env = decodeEnvelope(w.envelope);
  t.equal(env.keyName, 'demo');
  t.equal(env.keyVersion, 1);
  const u = await call<UnwrapRes>(c, 'Unwrap', { envelope: w.envelope, aad });
  t.same(u.plaintextDek, dek);
  t.equal(u.keyVersion, 1);
  t.equal(u.rewrapped, null);
});

t.test('GenerateDataKey: 32 bytes by default, 16 when asked, unwraps to the same DEK', async (t) => {
  const g = await call<{ plaintextDek: Buffer; envelope: Buffer; keyVersion: number }>(c, 'GenerateDataKey', {
    keyName: 'demo',
  });
  t.equal(g.plaintextDek.length, 32);
  const u = await call<UnwrapRes>(c, 'Unwrap', { envelope: g.envelope });
  t.same(u.plaintextDek, g.plaintextDek);
  const g16 = await call<{ plaintextDek: Buffer }>(c, 'GenerateDataKey', { keyName: 'demo', dekLength: 16 });
  t.equal(g16.plaintextDek.length, 16);
  const [e] = await settle(call(c, 'GenerateDataKey', { keyName: 'demo', dekLength: 20 }));
  t.equal(e?.code, 3);
  t.equal(reasonOf(e), 'DEK_SIZE');
});

t.test('rewrap: GenerateDataKey and Unwrap return the DEK only under the caller key', async (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const g = await call<{ plaintextDek: Buffer; envelope: Buffer; rewrapped: UnwrapRes['rewrapped'] }>(
    c,
    'GenerateDataKey',
    {
      keyName: 'demo',
      rewrap: {
        algorithm: 'RSA_OAEP_SHA256',
        recipientPublicKey: rsa.publicKey.export({ format: 'der', type: 'spki' }),
      },
    },
  );
  t.equal(g.plaintextDek.length, 0, 'no plaintext when rewrap is asked');
  const dek = unwrapRewrapped(rsa.privateKey, g.rewrapped!);
  t.equal(dek.length, 32);
  const u = await call<UnwrapRes>(c, 'Unwrap', {
    envelope: g.envelope,
    rewrap: {
      algorithm: 'ECDH_P256_HKDF_SHA256_AES_KWP',
      recipientPublicKey: ec.publicKey.export({ format: 'der', type: 'spki' }),
    },
  });
  t.equal(u.plaintextDek.length, 0);
  t.equal(u.rewrapped?.algorithm, 'ECDH_P256_HKDF_SHA256_AES_KWP');
  t.same(unwrapRewrapped(ec.privateKey, u.rewrapped!), dek);
  const [e] = await settle(
    call(c, 'Unwrap', {
      envelope: g.envelope,
      rewrap: { algorithm: 'RSA_OAEP_SHA256', recipientPublicKey: Buffer.from('not a key') },
    }),
  );
  t.equal(reasonOf(e), 'REWRAP_KEY_INVALID');
});

t.test('BatchWrap and BatchUnwrap: per-item status, one result per item in order', async (t) => {
  const deks = [randomBytes(32), randomBytes(16), randomBytes(24)];
  const bw = await call<{
    results: { status: { code: number; reason: string }; result: { envelope: Buffer } | null }[];
  }>(c, 'BatchWrap', {
    items: [
      { keyName: 'demo', plaintextDek: deks[0] },
      { keyName: 'demo', plaintextDek: Buffer.alloc(5) },
      { keyName: 'nope', plaintextDek: deks[1] },
      { keyName: 'demo', plaintextDek: deks[2], aad: Buffer.from('x') },
      // The same unknown key again: items after the first reuse its lookup, failure included.
      { keyName: 'nope', plaintextDek: deks[1] },
    ],
  });
  t.equal(bw.results.length, 5);
  t.equal(bw.results[0]!.status.code, 0);
  t.equal(bw.results[1]!.status.reason, 'DEK_SIZE');
  t.equal(bw.results[2]!.status.reason, 'KEY_NOT_FOUND');
  t.equal(bw.results[3]!.status.code, 0);
  t.equal(bw.results[4]!.status.reason, 'KEY_NOT_FOUND');
  t.equal(bw.results[4]!.result, null);
  const bu = await call<{
    results: { status: { code: number; reason: string }; result: UnwrapRes | null }[];
  }>(c, 'BatchUnwrap', {
    items: [
      { envelope: bw.results[0]!.result!.envelope },
      { envelope: bw.results[3]!.result!.envelope, aad: Buffer.from('x') },
      { envelope: bw.results[3]!.result!.envelope, aad: Buffer.from('y') },
      { envelope: Buffer.from('garbage') },
    ],
  });
  t.same(bu.results[0]!.result!.plaintextDek, deks[0]);
  t.same(bu.results[1]!.result!.plaintextDek, deks[2]);
  t.equal(bu.results[2]!.status.reason, 'INVALID_CIPHERTEXT');
  t.equal(bu.results[2]!.result, null);
  t.equal(bu.results[3]!.status.reason, 'MALFORMED_ENVELOPE');
  const [e] = await settle(
    call(c, 'BatchUnwrap', { items: Array.from({ length: 65 }, () => ({ envelope: Buffer.from('x') })) }),
  );
  t.equal(reasonOf(e), 'BATCH_TOO_LARGE');
});

t.test('a batch is one HSM batch', async (t) => {
  const g = await call<{ envelope: Buffer }>(c, 'GenerateDataKey', { keyName: 'demo' });
  const before = h.hsm.counters().ops.decrypt ?? 0;
  const batches: number[] = [];
  const orig = h.hsm.batch.bind(h.hsm);
  h.hsm.batch = (ops, o) => {
    batches.push(ops.length);
    return orig(ops, o);
  };
  t.teardown(() => {
    h.hsm.batch = orig;
  });
  await call(c, 'BatchUnwrap', { items: Array.from({ length: 10 }, () => ({ envelope: g.envelope })) });
  t.same(batches, [10]);
  t.equal((h.hsm.counters().ops.decrypt ?? 0) - before, 10);
});

t.test(
  'UnwrapStream: answers every message with its correlation id; failures do not end the stream',
  async (t) => {
    const g = await call<{ envelope: Buffer; plaintextDek: Buffer }>(c, 'GenerateDataKey', {
      keyName: 'demo',
    });
    const stream = (
      c.UnwrapStream as () => import('@grpc/grpc-js').ClientDuplexStream<unknown, unknown>
    ).call(c);
    const got = new Map<string, { status: { code: number; reason: string }; result: UnwrapRes | null }>();
    const done = new Promise<void>((resolve, reject) => {
      stream.on(
        'data',
        (m: { correlationId: string; status: { code: number; reason: string }; result: UnwrapRes | null }) =>
          got.set(m.correlationId, m),
      );
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    for (let i = 0; i < 50; i++) stream.write({ correlationId: `c${i}`, request: { envelope: g.envelope } });
    stream.write({ correlationId: 'bad', request: { envelope: Buffer.from('HYKDxx') } });
    stream.write({ correlationId: 'none' });
    stream.end();
    await done;
    t.equal(got.size, 52);
    t.same(got.get('c49')!.result!.plaintextDek, g.plaintextDek);
    t.equal(got.get('bad')!.status.reason, 'MALFORMED_ENVELOPE');
    t.equal(got.get('none')!.status.reason, 'INVALID_REQUEST');
  },
);

t.test('GetKey describes versions and state; Echo echoes', async (t) => {
  const r = await call<{
    key: { name: string; state: string; algorithm: string; primaryVersion: number; versions: unknown[] };
  }>(c, 'GetKey', { name: 'demo' });
  t.equal(r.key.name, 'demo');
  t.equal(r.key.state, 'ENABLED');
  t.equal(r.key.algorithm, 'AES_256');
  t.equal(r.key.primaryVersion, 1);
  t.equal(r.key.versions.length, 1);
  const [e] = await settle(call(c, 'GetKey', { name: 'missing' }));
  t.equal(e?.code, 5);
  t.equal(reasonOf(e), 'KEY_NOT_FOUND');
  const payload = randomBytes(100);
  const echo = await call<{ payload: Buffer }>(c, 'Echo', { payload });
  t.same(echo.payload, payload);
});

t.test('audit records exist for allowed calls with identity, key, rule and request id', async (t) => {
  const recs: AuditRecord[] = [];
  for await (const r of tailAudit(h.auditDir, 1000)) recs.push(r);
  const wrap = recs.find((r) => r.type === 'request' && r.requestId === 'wrap-1') as
    Record<string, any> | undefined;
  t.ok(wrap, 'the Wrap call was audited');
  t.equal(wrap!.op, 'Wrap');
  t.equal(wrap!.identity.san, 'spiffe://hyokd.dev/client');
  t.match(wrap!.identity.fingerprint, /^[0-9a-f]{64}$/);
  t.same(wrap!.key, { name: 'demo', version: 1 });
  t.same(wrap!.decision, { allowed: true, rule: 'binding[0]:crypto-user' });
  t.equal(wrap!.result.code, 'OK');
  t.same(wrap!.context, { reason: 'test' });
  t.notOk(
    recs.some((r) => r.op === 'Echo'),
    'Echo is not audited',
  );
  const batch = recs.find(
    (r: any) =>
      r.op === 'BatchUnwrap' && r.details?.items?.some((it: any) => it.code === 'INVALID_CIPHERTEXT'),
  ) as any;
  t.ok(batch, 'a failed batch item is audited with its code');
  t.equal(batch.result.code, 'OK', 'the call itself succeeded');
  t.equal(batch.details.itemCount, 4);
  t.same(
    batch.details.items.map((it: any) => [it.i, it.code]),
    [
      [0, 'OK'],
      [1, 'OK'],
      [2, 'INVALID_CIPHERTEXT'],
      [3, 'MALFORMED_ENVELOPE'],
    ],
  );
  t.match(batch.details.items[0], {
    key: 'demo',
    version: 1,
    rule: 'binding[0]:crypto-user',
    envelope: /^[0-9a-f]{16}$/,
  });
  t.equal(batch.decision.rule, 'per-item', 'the malformed item had no decision');
  const ten = recs.filter((r: any) => r.op === 'BatchUnwrap' && r.details?.itemCount === 10);
  t.equal(ten.length, 1, 'a 10-item batch is one audit record');
  t.same(ten[0]!.key, { name: 'demo', version: 1 }, 'its key, shared by every item');
  t.ok(
    h.calls.some((r) => r.method === 'Unwrap' && r.status === 'OK' && r.hsmSeconds! > 0),
    'observer saw calls',
  );
});
