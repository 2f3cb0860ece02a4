// The server's hyok.v1 definition zeroes the plaintext DEKs of a response once the response
// is serialized (src/server/proto.ts): the bytes that go out still hold the DEK, the
// response object's Buffers no longer do. The round trips over a real server
// (round-trips.test.ts, stream-and-audit.test.ts) check that clients still get the right
// DEKs; this checks the zeroing itself, for every response that carries one.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { hyokPackageDefinition, hyokServiceDefinition } from '../../src/server/proto.js';

const server = hyokServiceDefinition();
// The loader's own definition, unwrapped: what a client decodes with.
const plain = hyokPackageDefinition()['hyok.v1.Hyok'] as unknown as Record<
  string,
  { responseDeserialize(b: Buffer): Record<string, unknown> }
>;

const zeroed = (b: Buffer) => b.every((x) => x === 0);

t.test('Unwrap and GenerateDataKey: sent intact, then zeroed', async (t) => {
  for (const method of ['Unwrap', 'GenerateDataKey'] as const) {
    const dek = randomBytes(32);
    const copy = Buffer.from(dek);
    const response =
      method === 'Unwrap'
        ? { plaintextDek: dek, keyName: 'k', keyVersion: 3, rewrapped: null }
        : { plaintextDek: dek, envelope: randomBytes(80), keyName: 'k', keyVersion: 3, rewrapped: null };
    const bytes = server[method]!.responseSerialize(response);
    const back = plain[method]!.responseDeserialize(bytes);
    t.same(back.plaintextDek, copy, `${method}: the encoded response holds the DEK`);
    t.ok(zeroed(dek), `${method}: the response's Buffer is zeroed`);
  }
});

t.test('BatchUnwrap: every item that has a result, failed items untouched', async (t) => {
  const deks = [randomBytes(32), randomBytes(16)];
  const copies = deks.map((d) => Buffer.from(d));
  // Views into one ArrayBuffer, as the addon's batch results are.
  const pool = Buffer.concat(deks);
  const views = [pool.subarray(0, 32), pool.subarray(32)];
  const response = {
    results: [
      { status: { code: 0 }, result: { plaintextDek: views[0], keyName: 'k', keyVersion: 1 } },
      { status: { code: 3, reason: 'INVALID_CIPHERTEXT', message: 'no' }, result: null },
      { status: { code: 0 }, result: { plaintextDek: views[1], keyName: 'k', keyVersion: 2 } },
    ],
  };
  const back = plain.BatchUnwrap!.responseDeserialize(server.BatchUnwrap!.responseSerialize(response));
  const results = back.results as Array<{ result: { plaintextDek: Buffer } | null }>;
  t.same(results[0]!.result!.plaintextDek, copies[0]);
  t.same(results[2]!.result!.plaintextDek, copies[1]);
  t.equal(results[1]!.result, null, 'the failed item has no result');
  t.ok(zeroed(pool), 'the whole batch of plaintexts is zeroed');
});

t.test('UnwrapStream: the streamed result is zeroed after it is encoded', async (t) => {
  const dek = randomBytes(24);
  const copy = Buffer.from(dek);
  const response = { correlationId: 'c1', status: { code: 0 }, result: { plaintextDek: dek, keyName: 'k' } };
  const back = plain.UnwrapStream!.responseDeserialize(server.UnwrapStream!.responseSerialize(response));
  t.same((back.result as { plaintextDek: Buffer }).plaintextDek, copy);
  t.ok(zeroed(dek), 'the Buffer of the streamed result is zeroed');
});

t.test('responses without a DEK are serialized as before and left alone', async (t) => {
  const envelope = randomBytes(64);
  const copy = Buffer.from(envelope);
  const bytes = server.Wrap!.responseSerialize({ envelope, keyName: 'k', keyVersion: 1 });
  t.same(plain.Wrap!.responseDeserialize(bytes).envelope, copy);
  t.same(envelope, copy, 'an envelope is not a secret: not zeroed');
  // A rewrapped response has an empty plaintext_dek; nothing to zero, nothing breaks.
  const rewrapped = {
    algorithm: 'RSA_OAEP_SHA256',
    wrappedDek: randomBytes(256),
    ephemeralPublicKey: Buffer.alloc(0),
  };
  const kept = Buffer.from(rewrapped.wrappedDek);
  server.Unwrap!.responseSerialize({ plaintextDek: Buffer.alloc(0), keyName: 'k', keyVersion: 1, rewrapped });
  t.same(rewrapped.wrappedDek, kept, 'the rewrapped DEK (encrypted to the caller) is left alone');
});
