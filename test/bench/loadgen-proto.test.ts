// The load generator reads per-item status codes by walking the protobuf wire format
// instead of decoding whole messages, and splits gRPC frames out of arbitrary chunks. A
// mistake there would misreport every batch and stream benchmark, so both are checked
// against protobufjs's own encoding of the real hyok.v1 messages.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import {
  batchItemCodes,
  decode,
  encode,
  FrameReader,
  grpcFrame,
  hyokTypes,
  streamItemCode,
} from '../../bench/loadgen/proto.js';
import { best, median } from '../../bench/lib/stats.js';

const T = hyokTypes();

const ok = (i: number) => ({
  status: { code: 0 },
  result: { plaintext: randomBytes(32), keyName: `k${i}`, keyVersion: i + 1 },
});
const failed = (code: number, reason: string) => ({
  status: { code, reason, message: `failed: ${reason}`, metadata: { rule: 'deny[0]', key: 'x' } },
});

t.test('batchItemCodes counts OK and failed items as a full decode does', async (t) => {
  const cases: Array<[string, unknown[]]> = [
    ['empty', []],
    ['all OK', Array.from({ length: 64 }, (_, i) => ok(i))],
    [
      'mixed',
      [
        ok(0),
        failed(3, 'INVALID_CIPHERTEXT'),
        ok(2),
        failed(9, 'KEY_DISABLED'),
        failed(7, 'PERMISSION_DENIED'),
      ],
    ],
    // A large code needs a multi-byte varint; an item with no status at all counts as OK (code 0).
    ['multi-byte codes and a missing status', [failed(300, 'X'), { result: ok(1).result }]],
  ];
  for (const [what, results] of cases) {
    const msg = encode(T.BatchUnwrapResponse, { results });
    const full = decode<{ results: Array<{ status: { code: number } | null }> }>(T.BatchUnwrapResponse, msg);
    const want = full.results.filter((r) => (r.status?.code ?? 0) === 0).length;
    t.same(batchItemCodes(msg), { ok: want, failed: full.results.length - want }, what);
  }
});

t.test('streamItemCode reads the status of one stream response', async (t) => {
  for (const [code, reason] of [
    [0, ''],
    [3, 'MALFORMED_ENVELOPE'],
    [14, 'HSM_UNAVAILABLE'],
    [1000, 'BIG'],
  ] as const) {
    const msg = encode(T.UnwrapStreamResponse, {
      correlationId: `c-${code}`,
      status: { code, reason },
      ...(code === 0 ? { result: ok(0).result } : {}),
    });
    t.equal(streamItemCode(msg), code, reason || 'OK');
  }
  t.equal(streamItemCode(encode(T.UnwrapStreamResponse, { correlationId: 'x' })), 0, 'no status: 0');
});

t.test('damaged messages throw instead of being miscounted', async (t) => {
  const msg = encode(T.BatchUnwrapResponse, { results: [ok(0), failed(3, 'X')] });
  t.throws(() => batchItemCodes(msg.subarray(0, msg.length - 3)), /overruns|truncated/, 'truncated');
  t.throws(() => batchItemCodes(Uint8Array.from([0x0f])), /unsupported wire type/, 'wire type 7');
  t.throws(() => streamItemCode(Uint8Array.from([0x12, 0xff])), /truncated/, 'truncated length');
});

t.test('FrameReader splits frames however the bytes arrive', async (t) => {
  const messages = [Buffer.alloc(0), randomBytes(1), randomBytes(300), randomBytes(70_000)];
  const stream = Buffer.concat(messages.map((m) => grpcFrame(m)));
  t.equal(stream.readUInt32BE(1), 0, 'prefix: flag 0, big-endian length');
  for (const chunk of [1, 2, 5, 7, 4096, stream.length]) {
    const reader = new FrameReader();
    const out: Buffer[] = [];
    for (let p = 0; p < stream.length; p += chunk) out.push(...reader.push(stream.subarray(p, p + chunk)));
    t.equal(out.length, messages.length, `chunks of ${chunk}`);
    out.forEach((m, i) => t.ok(m.equals(messages[i]!), `chunks of ${chunk}: message ${i}`));
  }
  const reader = new FrameReader();
  t.same(reader.push(stream.subarray(0, 4)), [], 'a partial prefix waits');
});

t.test('reducers: best is the fastest round, median the middle one', async (t) => {
  t.equal(best([3, 9, 4]), 9);
  t.equal(median([3, 9, 4]), 4);
  t.equal(median([4, 1, 3, 2]), 2.5);
  t.ok(Number.isNaN(best([])) && Number.isNaN(median([])), 'no rounds: NaN, never 0');
});
