import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import t from 'tap';
import { HyokError, toHyokError } from '../src/errors.js';
import { FakeHsmBackend } from '../src/hsm/fake-backend.js';
import {
  MAX_CALLER_AAD_BYTES,
  MAX_ENVELOPE_BYTES,
  decodeEnvelope,
  encodeEnvelope,
  encodeEnvelopeHeader,
  envelopeAad,
  gcmInput,
  splitGcmOutput,
} from '../src/envelope.js';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

const kek = randomBytes(32);

// Seal a DEK the way the server does, with node:crypto standing in for the HSM.
function seal(keyName: string, keyVersion: number, dek: Buffer, callerAad?: Buffer): Buffer {
  const header = encodeEnvelopeHeader({ keyName, keyVersion });
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek, iv);
  c.setAAD(envelopeAad(header, callerAad));
  const out = Buffer.concat([c.update(dek), c.final(), c.getAuthTag()]);
  const { ciphertext, tag } = splitGcmOutput(out);
  return encodeEnvelope({ keyName, keyVersion, iv, tag, ciphertext });
}

function open(envelope: Buffer, callerAad?: Buffer): Buffer {
  const env = decodeEnvelope(envelope);
  const d = createDecipheriv('aes-256-gcm', kek, env.iv);
  d.setAAD(envelopeAad(env.header, callerAad));
  const input = gcmInput(env);
  d.setAuthTag(input.subarray(input.length - 16));
  return Buffer.concat([d.update(input.subarray(0, input.length - 16)), d.final()]);
}

function expectMalformed(t: TapTest, bytes: Uint8Array, pattern: RegExp, name: string): void {
  try {
    decodeEnvelope(bytes);
    t.fail(`${name}: decoded`);
  } catch (e) {
    t.ok(e instanceof HyokError, `${name}: HyokError`);
    t.equal((e as HyokError).code, 'MALFORMED_ENVELOPE', `${name}: code`);
    t.match((e as HyokError).message, pattern, `${name}: message`);
  }
}

const sample = {
  keyName: 'payments-kek',
  keyVersion: 7,
  iv: Buffer.alloc(12, 1),
  tag: Buffer.alloc(16, 2),
  ciphertext: Buffer.alloc(32, 3),
};

t.test('layout matches the documented table', async (t) => {
  const b = encodeEnvelope(sample);
  const n = sample.keyName.length;
  t.equal(b.length, 41 + n + 32);
  t.equal(b.subarray(0, 4).toString('ascii'), 'HYKD');
  t.equal(b[4], 1);
  t.equal(b[5], 1);
  t.equal(b[6], n);
  t.equal(b.subarray(7, 7 + n).toString(), sample.keyName);
  t.equal(b.readUInt32BE(7 + n), 7);
  t.same(b.subarray(11 + n, 23 + n), sample.iv);
  t.same(b.subarray(23 + n, 39 + n), sample.tag);
  t.equal(b.readUInt16BE(39 + n), 32);
  t.same(b.subarray(41 + n), sample.ciphertext);
  const d = decodeEnvelope(b);
  t.same(d.header, b.subarray(0, 11 + n), 'header is magic through key version');
  t.same(d.header, encodeEnvelopeHeader(sample));
});

t.test('round trip', async (t) => {
  for (const name of ['a', 'k'.repeat(128), 'clé-ünïcode', 'x.y_z-1']) {
    for (const version of [1, 2, 65536, 0xffffffff]) {
      for (const len of [1, 16, 32, 1024]) {
        const e = {
          keyName: name,
          keyVersion: version,
          iv: randomBytes(12),
          tag: randomBytes(16),
          ciphertext: randomBytes(len),
        };
        const d = decodeEnvelope(encodeEnvelope(e));
        t.equal(d.keyName, name);
        t.equal(d.keyVersion, version);
        t.same(d.iv, e.iv);
        t.same(d.tag, e.tag);
        t.same(d.ciphertext, e.ciphertext);
        t.equal(d.algorithm, 'AES-256-GCM');
        t.equal(d.formatVersion, 1);
      }
    }
  }
  const big = encodeEnvelope({ ...sample, keyName: 'k'.repeat(128), ciphertext: Buffer.alloc(1024) });
  t.equal(big.length, MAX_ENVELOPE_BYTES, 'the bound is the largest valid envelope');
  // decode accepts a Uint8Array view with an offset
  const inner = encodeEnvelope(sample);
  const wrapped = new Uint8Array(inner.length + 10);
  wrapped.set(inner, 5);
  t.equal(decodeEnvelope(wrapped.subarray(5, 5 + inner.length)).keyName, sample.keyName);
});

t.test('decoded parts are views of the input; gcmInput is ciphertext || tag', async (t) => {
  const input = Buffer.from(encodeEnvelope(sample));
  const d = decodeEnvelope(input);
  t.same(d.header, input.subarray(0, d.header.length));
  const hsmInput = gcmInput(d);
  t.same(hsmInput, Buffer.concat([sample.ciphertext, sample.tag]));
  // A change to the input shows through every part (views, no copies)…
  const before = [d.header, d.iv, d.tag, d.ciphertext].map((b) => Buffer.from(b));
  input.fill(0xee);
  for (const [i, part] of [d.header, d.iv, d.tag, d.ciphertext].entries()) {
    t.notSame(part, before[i], `part ${i} is a view of the input`);
    t.ok(part.every((x) => x === 0xee));
  }
  // …but not through the HSM input, which is its own buffer.
  t.same(hsmInput, Buffer.concat([sample.ciphertext, sample.tag]));
});

t.test('seal and open with header binding', async (t) => {
  const dek = randomBytes(32);
  const aad = Buffer.from('tenant=42');
  const env = seal('k1', 3, dek, aad);
  t.same(open(env, aad), dek, 'opens with the same AAD');
  t.throws(() => open(env, Buffer.from('tenant=43')), 'another caller AAD fails');
  t.throws(() => open(env), 'missing caller AAD fails');
  // relabel the version: still well-formed, but the header no longer matches
  const relabelled = Buffer.from(env);
  relabelled.writeUInt32BE(4, 7 + 2);
  t.equal(decodeEnvelope(relabelled).keyVersion, 4);
  t.throws(() => open(relabelled, aad), 'changed key version fails');
  const renamed = Buffer.from(env);
  renamed[8] = '2'.charCodeAt(0); // k1 → k2
  t.throws(() => open(renamed, aad), 'changed key name fails');
});

t.test('envelopeAad is unambiguous and bounded', async (t) => {
  const h = encodeEnvelopeHeader({ keyName: 'ab', keyVersion: 1 });
  const a = envelopeAad(h, Buffer.from('c'));
  t.equal(a.readUInt32BE(0), h.length);
  t.same(a.subarray(4, 4 + h.length), h);
  t.same(a.subarray(4 + h.length), Buffer.from('c'));
  t.same(envelopeAad(h), Buffer.concat([a.subarray(0, 4 + h.length)]), 'empty caller AAD');
  t.doesNotThrow(() => envelopeAad(h, Buffer.alloc(MAX_CALLER_AAD_BYTES)));
  t.throws(() => envelopeAad(h, Buffer.alloc(MAX_CALLER_AAD_BYTES + 1)), { code: 'AAD_SIZE' });
});

t.test('encode rejects bad fields', async (t) => {
  const bad: [string, object][] = [
    ['empty name', { keyName: '' }],
    ['long name', { keyName: 'k'.repeat(129) }],
    ['lone surrogate', { keyName: 'a\ud800' }],
    ['version 0', { keyVersion: 0 }],
    ['version 2^32', { keyVersion: 2 ** 32 }],
    ['fractional version', { keyVersion: 1.5 }],
    ['short iv', { iv: Buffer.alloc(11) }],
    ['long tag', { tag: Buffer.alloc(17) }],
    ['empty ciphertext', { ciphertext: Buffer.alloc(0) }],
    ['huge ciphertext', { ciphertext: Buffer.alloc(1025) }],
  ];
  for (const [name, patch] of bad) {
    t.throws(() => encodeEnvelope({ ...sample, ...patch }), { code: 'MALFORMED_ENVELOPE' }, name);
  }
});

t.test('decode rejects every malformed case', async (t) => {
  const good = encodeEnvelope(sample);
  const n = sample.keyName.length;
  const mut = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };
  expectMalformed(t, Buffer.alloc(0), /truncated before the key name/, 'empty');
  expectMalformed(t, good.subarray(0, 6), /truncated before the key name/, 'six bytes');
  expectMalformed(
    t,
    mut((b) => (b[0] = 0x48 ^ 1)),
    /bad magic/,
    'magic',
  );
  expectMalformed(
    t,
    mut((b) => (b[4] = 2)),
    /unsupported format version 2/,
    'version',
  );
  expectMalformed(
    t,
    mut((b) => (b[4] = 0)),
    /unsupported format version 0/,
    'version 0',
  );
  expectMalformed(
    t,
    mut((b) => (b[5] = 9)),
    /unknown algorithm id 9/,
    'algorithm',
  );
  expectMalformed(
    t,
    mut((b) => (b[6] = 0)),
    /key name length 0/,
    'zero name length',
  );
  expectMalformed(
    t,
    mut((b) => (b[6] = 200)),
    /key name length 200/,
    'oversized name length',
  );
  expectMalformed(t, good.subarray(0, 7 + n - 1), /truncated key name/, 'cut in name');
  expectMalformed(
    t,
    mut((b) => (b[7] = 0xff)),
    /not valid UTF-8/,
    'bad UTF-8',
  );
  expectMalformed(t, good.subarray(0, 7 + n + 3), /truncated key version/, 'cut in version');
  expectMalformed(
    t,
    mut((b) => b.writeUInt32BE(0, 7 + n)),
    /key version 0/,
    'version 0',
  );
  expectMalformed(t, good.subarray(0, 11 + n + 5), /truncated IV/, 'cut in IV');
  expectMalformed(t, good.subarray(0, 23 + n + 15), /truncated tag/, 'cut in tag');
  expectMalformed(t, good.subarray(0, 39 + n + 1), /truncated ciphertext length/, 'cut in length');
  expectMalformed(
    t,
    mut((b) => b.writeUInt16BE(0, 39 + n)),
    /ciphertext length 0/,
    'zero ciphertext length',
  );
  expectMalformed(
    t,
    mut((b) => b.writeUInt16BE(2000, 39 + n)),
    /ciphertext length 2000/,
    'oversized ciphertext length',
  );
  expectMalformed(
    t,
    good.subarray(0, good.length - 1),
    /truncated ciphertext \(31 of 32 bytes\)/,
    'cut in ciphertext',
  );
  expectMalformed(t, Buffer.concat([good, Buffer.from([0])]), /1 trailing bytes/, 'trailing byte');
  expectMalformed(t, Buffer.alloc(MAX_ENVELOPE_BYTES + 1), /longer than/, 'oversized');
  expectMalformed(t, 'HYKD' as unknown as Uint8Array, /not bytes/, 'a string');
  // every strict prefix fails, and always as MALFORMED_ENVELOPE
  for (let i = 0; i < good.length; i++) {
    t.throws(() => decodeEnvelope(good.subarray(0, i)), { code: 'MALFORMED_ENVELOPE' }, `prefix ${i}`);
  }
});

t.test('random bytes never throw anything but MALFORMED_ENVELOPE', async (t) => {
  const good = encodeEnvelope(sample);
  let decoded = 0;
  let failures = 0;
  for (let i = 0; i < 3000; i++) {
    let input: Buffer;
    if (i % 3 === 0) input = randomBytes(Math.floor(Math.random() * 200));
    else {
      // mutate a valid envelope: a few random byte changes, sometimes a length change
      input = Buffer.from(good);
      for (let k = 0; k < 1 + (i % 4); k++)
        input[Math.floor(Math.random() * input.length)] = Math.floor(Math.random() * 256);
      if (i % 5 === 0) input = input.subarray(0, Math.floor(Math.random() * input.length));
    }
    try {
      decodeEnvelope(input);
      decoded++;
    } catch (e) {
      if (!(e instanceof HyokError) || e.code !== 'MALFORMED_ENVELOPE') {
        failures++;
        t.fail(`unexpected ${String(e)}`);
      }
    }
  }
  t.equal(failures, 0, 'only MALFORMED_ENVELOPE');
  t.ok(decoded > 0, 'mutations of IV/tag/ciphertext still decode (they fail later in GCM)');
});

t.test('with an HSM backend: seal, open, and errors map to INVALID_CIPHERTEXT', async (t) => {
  const hsm = new FakeHsmBackend();
  t.teardown(() => hsm.close());
  const key = { id: Buffer.from('kek-v1'), cls: 'secret' as const };
  await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id: key.id, label: 'k', usage: { encrypt: true, decrypt: true } },
  });
  const dek = randomBytes(32);
  const header = encodeEnvelopeHeader({ keyName: 'orders', keyVersion: 1 });
  const out = await hsm.run({
    op: 'encrypt',
    key,
    plaintext: dek,
    aad: envelopeAad(header, Buffer.from('ctx')),
  });
  const env = encodeEnvelope({
    keyName: 'orders',
    keyVersion: 1,
    iv: out.iv,
    ...splitGcmOutput(out.ciphertext),
  });
  const d = decodeEnvelope(env);
  const back = await hsm.run({
    op: 'decrypt',
    key,
    iv: d.iv,
    ciphertext: gcmInput(d),
    aad: envelopeAad(d.header, Buffer.from('ctx')),
  });
  t.same(back.plaintext, dek);
  const moved = Buffer.from(env);
  moved.writeUInt32BE(2, 7 + 'orders'.length); // claim version 2, same bytes otherwise
  const m = decodeEnvelope(moved);
  const err = await hsm
    .run({
      op: 'decrypt',
      key,
      iv: m.iv,
      ciphertext: gcmInput(m),
      aad: envelopeAad(m.header, Buffer.from('ctx')),
    })
    .catch((e: unknown) => e);
  t.equal(toHyokError(err, 'decrypt').code, 'INVALID_CIPHERTEXT', 'a relabelled envelope does not open');
});
