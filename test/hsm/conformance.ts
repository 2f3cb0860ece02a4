// The HSM backend conformance suite: one set of checks for every HsmBackend (the in-memory
// fake in test/hsm/fake-backend.test.ts, SoftHSM2 via the native addon in
// test/hsm/native-backend.test.ts), so the fake cannot drift from the real thing.
//
// It only assumes what any compliant PKCS#11 v2.40 token does, plus two allowances:
// a GCM tag failure (and a failed unwrap/RSA decrypt) may be CKR_GENERAL_ERROR, as
// SoftHSM2 reports it, as well as the spec's data-error codes; and optional mechanisms
// (OAEP SHA-256, RSA AES key wrap, AES key wrap with padding, session copies) are gated
// on `capabilities()`.
//
// Objects get random ids and `conf-…` labels; token objects are destroyed at the end.
//
// Usage:
//   t.test('conformance', (t) => hsmConformance(t, () => makeMyBackend()));

import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPublicKey,
  constants,
  publicEncrypt,
  randomBytes,
  verify as nodeVerify,
} from 'node:crypto';
import type t from 'tap';
import { HsmError, isDataError } from '../../src/hsm/errors.js';
import type { HsmBackend, KeyRef, ObjectSpec, Op } from '../../src/hsm/types.js';

/** The test object tap 21 hands to `t.test` callbacks. */
export type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

/** A failed decrypt/unwrap: a spec data error, or SoftHSM2's CKR_GENERAL_ERROR. */
export function isDecryptFailure(code: string): boolean {
  return isDataError(code) || code === 'CKR_GENERAL_ERROR';
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'no error';
  } catch (e) {
    return e instanceof HsmError ? e.code : `not an HsmError: ${String(e)}`;
  }
}

function flip(b: Buffer, index: number): Buffer {
  const c = Buffer.from(b);
  c[index] = c[index]! ^ 0x01;
  return c;
}

/** Runs the conformance suite on one backend made by `makeBackend`; closes it at the end. */
export async function hsmConformance(t: TapTest, makeBackend: () => Promise<HsmBackend>): Promise<void> {
  const hsm = await makeBackend();
  const run = `conf-${randomBytes(4).toString('hex')}`;
  const tokenHandles: number[] = [];
  t.teardown(async () => {
    for (const h of tokenHandles) await hsm.run({ op: 'destroy', handle: h }).catch(() => undefined);
    await hsm.close();
  });

  let n = 0;
  const spec = (usage: ObjectSpec['usage'], extra: Partial<ObjectSpec> = {}): ObjectSpec => ({
    id: randomBytes(16),
    label: `${run}-${++n}`,
    token: false,
    usage,
    ...extra,
  });
  // KeyRefs name token objects unless `token: false`; most test keys are session objects.
  const ref = (s: ObjectSpec, cls: KeyRef['cls']): KeyRef => ({ id: s.id, cls, token: s.token ?? true });
  const aes = async (
    usage: ObjectSpec['usage'],
    extra: Partial<ObjectSpec> = {},
    keyBits: 128 | 192 | 256 = 256,
  ) => {
    const s = spec(usage, extra);
    const { handle } = await hsm.run({ op: 'generateKey', keyBits, spec: s });
    if (s.token) tokenHandles.push(handle);
    return { spec: s, handle, ref: ref(s, 'secret') };
  };

  const caps = await hsm.capabilities();

  await t.test('describes itself', async (t) => {
    t.type(hsm.module.cryptokiVersion, 'string');
    t.type(hsm.token.label, 'string');
    t.ok(Array.isArray(hsm.mechanisms()), 'mechanisms() is a list');
    for (const k of ['oaepSha1', 'oaepSha256', 'rsaAesKeyWrap', 'aesKeyWrapPad', 'sessionCopy'] as const) {
      t.type(caps[k], 'boolean', `capability ${k}`);
    }
    t.equal(hsm.state(), 'ready');
    const c = hsm.counters();
    t.ok(c.queueCapacity > 0, 'has a bounded queue');
    t.equal(c.state, 'ready');
  });

  await t.test('random', async (t) => {
    for (const length of [1, 12, 32, 257]) {
      const { bytes } = await hsm.run({ op: 'random', length });
      t.equal(bytes.length, length, `${length} bytes`);
    }
    const a = await hsm.run({ op: 'random', length: 32 });
    const b = await hsm.run({ op: 'random', length: 32 });
    t.notSame(a.bytes, b.bytes, 'two draws differ');
  });

  const kek = await aes({ encrypt: true, decrypt: true }, { token: true });

  await t.test('generateKey attributes: sensitive, never extractable, local', async (t) => {
    const { attrs } = await hsm.run({ op: 'getAttributes', handle: kek.handle });
    t.equal(attrs.handle, kek.handle);
    t.equal(attrs.cls, 'secret');
    t.equal(attrs.keyType, 'aes');
    t.equal(attrs.valueLen, 32);
    t.same(attrs.id, kek.spec.id);
    t.equal(attrs.label, kek.spec.label);
    t.equal(attrs.token, true);
    t.equal(attrs.sensitive, true);
    t.equal(attrs.extractable, false);
    t.equal(attrs.alwaysSensitive, true);
    t.equal(attrs.neverExtractable, true);
    t.equal(attrs.local, true);
    t.match(attrs.usage, { encrypt: true, decrypt: true, wrap: false, unwrap: false, sign: false });
    const k128 = await aes({ encrypt: true }, {}, 128);
    t.equal((await hsm.run({ op: 'getAttributes', handle: k128.handle })).attrs.valueLen, 16, 'AES-128');
  });

  await t.test('AES-256-GCM round trip and data errors', async (t) => {
    const pt = randomBytes(32);
    const aad = Buffer.from('header||caller aad');
    const enc = await hsm.run({ op: 'encrypt', key: kek.ref, plaintext: pt, aad });
    t.equal(enc.iv.length, 12, 'the HSM draws a 12-byte IV');
    t.equal(enc.ciphertext.length, pt.length + 16, 'ciphertext || 16-byte tag');
    t.notSame(enc.ciphertext.subarray(0, 32), pt, 'ciphertext is not the plaintext');
    const dec = await hsm.run({ op: 'decrypt', key: kek.ref, iv: enc.iv, ciphertext: enc.ciphertext, aad });
    t.same(dec.plaintext, pt, 'decrypts');
    const enc2 = await hsm.run({ op: 'encrypt', key: kek.ref, plaintext: pt, aad });
    t.notSame(enc2.iv, enc.iv, 'fresh IV per encryption');

    const iv = randomBytes(12);
    const withIv = await hsm.run({ op: 'encrypt', key: kek.ref, plaintext: pt, iv });
    t.same(withIv.iv, iv, 'caller IV is used');
    // the output is standard GCM: a 12-byte-IV, no-AAD encryption is reproducible by anyone
    // holding the key; here we can only check it decrypts without AAD
    t.same((await hsm.run({ op: 'decrypt', key: kek.ref, iv, ciphertext: withIv.ciphertext })).plaintext, pt);

    const other = await aes({ encrypt: true, decrypt: true });
    const bad: [string, Op][] = [
      [
        'wrong AAD',
        { op: 'decrypt', key: kek.ref, iv: enc.iv, ciphertext: enc.ciphertext, aad: Buffer.from('other') },
      ],
      ['missing AAD', { op: 'decrypt', key: kek.ref, iv: enc.iv, ciphertext: enc.ciphertext }],
      [
        'bit-flipped ciphertext',
        { op: 'decrypt', key: kek.ref, iv: enc.iv, ciphertext: flip(enc.ciphertext, 3), aad },
      ],
      [
        'bit-flipped tag',
        { op: 'decrypt', key: kek.ref, iv: enc.iv, ciphertext: flip(enc.ciphertext, 40), aad },
      ],
      [
        'truncated by one byte',
        { op: 'decrypt', key: kek.ref, iv: enc.iv, ciphertext: enc.ciphertext.subarray(0, 47), aad },
      ],
      [
        'truncated below the tag',
        { op: 'decrypt', key: kek.ref, iv: enc.iv, ciphertext: enc.ciphertext.subarray(0, 10), aad },
      ],
      ['wrong IV', { op: 'decrypt', key: kek.ref, iv: flip(enc.iv, 0), ciphertext: enc.ciphertext, aad }],
      ['wrong key', { op: 'decrypt', key: other.ref, iv: enc.iv, ciphertext: enc.ciphertext, aad }],
    ];
    for (const [name, op] of bad) {
      const code = await codeOf(hsm.run(op));
      t.ok(isDecryptFailure(code), `${name}: data error (got ${code})`);
    }
    t.same(
      (await hsm.run({ op: 'decrypt', key: kek.ref, iv: enc.iv, ciphertext: enc.ciphertext, aad })).plaintext,
      pt,
      'the backend is still usable after data errors',
    );
  });

  await t.test('a batch mixing decrypts, failed decrypts and other ops: each result its own', async (t) => {
    const pts = [32, 1, 100, 48, 32].map((len, i) => Buffer.alloc(len, i + 1));
    const enc = (await hsm.batch(pts.map((p): Op => ({ op: 'encrypt', key: kek.ref, plaintext: p })))).map(
      (r) => {
        if (!r.ok) throw r.error;
        return r as unknown as { iv: Buffer; ciphertext: Buffer };
      },
    );
    const dec = (i: number, ciphertext = enc[i]!.ciphertext): Op => ({
      op: 'decrypt',
      key: kek.ref,
      iv: enc[i]!.iv,
      ciphertext,
    });
    const res = await hsm.batch([
      dec(0),
      { op: 'random', length: 8 },
      dec(1, flip(enc[1]!.ciphertext, 0)),
      dec(2),
      { op: 'encrypt', key: kek.ref, plaintext: Buffer.alloc(5, 9) },
      dec(3),
      dec(4),
    ]);
    const plain = (i: number): Buffer => {
      const r = res[i]!;
      if (!r.ok) throw r.error;
      return (r as unknown as { plaintext: Buffer }).plaintext;
    };
    t.same(
      [0, 3, 5, 6].map((i) => plain(i)),
      [pts[0], pts[2], pts[3], pts[4]],
      'every decrypt its own plaintext, in order',
    );
    t.ok(
      [0, 3, 5, 6].every((i) => Buffer.isBuffer(plain(i))),
      'as Buffers',
    );
    t.equal((res[1] as unknown as { bytes: Buffer }).bytes.length, 8, 'random between them');
    const failed = res[2]!;
    t.ok(!failed.ok && isDecryptFailure(failed.error.code), 'the failed decrypt fails alone');
    t.equal((res[4] as unknown as { ciphertext: Buffer }).ciphertext.length, 5 + 16, 'encrypt between them');
    plain(0).fill(0);
    t.same(plain(3), pts[2], 'zeroing one plaintext leaves the next');
    t.same(plain(6), pts[4]);
  });

  await t.test('usage flags are enforced', async (t) => {
    const encOnly = await aes({ encrypt: true });
    const enc = await hsm.run({ op: 'encrypt', key: encOnly.ref, plaintext: randomBytes(16) });
    t.equal(
      await codeOf(hsm.run({ op: 'decrypt', key: encOnly.ref, iv: enc.iv, ciphertext: enc.ciphertext })),
      'CKR_KEY_FUNCTION_NOT_PERMITTED',
      'decrypt without CKA_DECRYPT',
    );
    const decOnly = await aes({ decrypt: true });
    t.equal(
      await codeOf(hsm.run({ op: 'encrypt', key: decOnly.ref, plaintext: randomBytes(16) })),
      'CKR_KEY_FUNCTION_NOT_PERMITTED',
      'encrypt without CKA_ENCRYPT',
    );
    t.equal(
      await codeOf(
        hsm.run({ op: 'encrypt', key: { id: randomBytes(16), cls: 'secret' }, plaintext: randomBytes(16) }),
      ),
      'HYOKD_KEY_NOT_FOUND',
      'unknown key id',
    );
    t.equal(
      await codeOf(
        hsm.run({ op: 'encrypt', key: { ...encOnly.ref, token: true }, plaintext: randomBytes(16) }),
      ),
      'HYOKD_KEY_NOT_FOUND',
      'a KeyRef to a token object does not find a session object',
    );
  });

  // RSA: 2048 bits keeps key generation quick on a shared machine.
  const rsaPub = spec({ encrypt: true, verify: true, wrap: true });
  const rsaPriv = spec({ decrypt: true, sign: true, unwrap: true });
  const rsa = await hsm.run({
    op: 'generateKeyPair',
    kind: 'rsa',
    modulusBits: 2048,
    publicSpec: rsaPub,
    privateSpec: rsaPriv,
  });
  const rsaPubRef = ref(rsaPub, 'public');
  const rsaPrivRef = ref(rsaPriv, 'private');
  const rsaAttrs = (await hsm.run({ op: 'getAttributes', handle: rsa.publicHandle })).attrs;
  const rsaNode = createPublicKey({
    key: {
      kty: 'RSA',
      n: rsaAttrs.modulus!.toString('base64url'),
      e: rsaAttrs.publicExponent!.toString('base64url'),
    },
    format: 'jwk',
  });

  await t.test('RSA key pair attributes', async (t) => {
    t.equal(rsaAttrs.cls, 'public');
    t.equal(rsaAttrs.keyType, 'rsa');
    t.equal(rsaAttrs.modulus?.length, 256, '2048-bit modulus');
    t.ok(rsaAttrs.publicExponent && rsaAttrs.publicExponent.length > 0, 'public exponent');
    const priv = (await hsm.run({ op: 'getAttributes', handle: rsa.privateHandle })).attrs;
    t.equal(priv.cls, 'private');
    t.equal(priv.keyType, 'rsa');
    t.equal(priv.sensitive, true);
    t.equal(priv.extractable, false);
    t.same(priv.id, rsaPriv.id);
  });

  await t.test('RSA-OAEP encrypt/decrypt', async (t) => {
    const hashes = (['sha1', 'sha256'] as const).filter((h) =>
      h === 'sha1' ? caps.oaepSha1 : caps.oaepSha256,
    );
    if (hashes.length === 0) t.comment('no OAEP hash supported: skipped');
    for (const hash of hashes) {
      const data = randomBytes(32);
      const { data: ct } = await hsm.run({ op: 'rsaEncrypt', key: rsaPubRef, hash, data });
      t.equal(ct.length, 256, `${hash}: one modulus-sized block`);
      t.same(
        (await hsm.run({ op: 'rsaDecrypt', key: rsaPrivRef, hash, data: ct })).data,
        data,
        `${hash}: round trip`,
      );
      // interoperability: a standard OAEP ciphertext made outside the HSM decrypts
      const outside = publicEncrypt(
        { key: rsaNode, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash },
        data,
      );
      t.same(
        (await hsm.run({ op: 'rsaDecrypt', key: rsaPrivRef, hash, data: outside })).data,
        data,
        `${hash}: standard OAEP`,
      );
      const code = await codeOf(hsm.run({ op: 'rsaDecrypt', key: rsaPrivRef, hash, data: flip(ct, 100) }));
      t.ok(isDecryptFailure(code), `${hash}: corrupted ciphertext fails (got ${code})`);
    }
  });

  await t.test('wrap and unwrap', async (t) => {
    const wrapper = await aes({ wrap: true, unwrap: true });
    const dataKey = await aes({ encrypt: true, decrypt: true }, { extractable: true });
    const locked = await aes({ encrypt: true, decrypt: true });
    const pt = randomBytes(24);
    const sealed = await hsm.run({ op: 'encrypt', key: dataKey.ref, plaintext: pt });

    const mechs = (['AES_KEY_WRAP', 'AES_KEY_WRAP_PAD'] as const).filter(
      (m) => m === 'AES_KEY_WRAP' || caps.aesKeyWrapPad,
    );
    for (const mechanism of mechs) {
      const { wrapped } = await hsm.run({
        op: 'wrapKey',
        mechanism,
        wrappingKey: wrapper.ref,
        key: dataKey.ref,
      });
      t.equal(wrapped.length, 40, `${mechanism}: 32-byte key wraps to 40 bytes`);
      const target = spec({ decrypt: true });
      const { handle } = await hsm.run({
        op: 'unwrapKey',
        mechanism,
        unwrappingKey: wrapper.ref,
        wrapped,
        keyType: 'aes',
        spec: target,
      });
      const attrs = (await hsm.run({ op: 'getAttributes', handle })).attrs;
      t.equal(attrs.sensitive, true, `${mechanism}: unwrapped key is sensitive`);
      t.equal(attrs.extractable, false, `${mechanism}: unwrapped key is not extractable`);
      // (CKA_VALUE_LEN of an unwrapped key is not checked: SoftHSM2 leaves it 0 unless the
      // template sets it; the decrypt below proves the key is the right one.)
      const back = await hsm.run({
        op: 'decrypt',
        key: ref(target, 'secret'),
        iv: sealed.iv,
        ciphertext: sealed.ciphertext,
      });
      t.same(back.plaintext, pt, `${mechanism}: the unwrapped key is the same key`);

      const wrongKey = await aes({ wrap: true, unwrap: true });
      const code = await codeOf(
        hsm.run({
          op: 'unwrapKey',
          mechanism,
          unwrappingKey: wrongKey.ref,
          wrapped,
          keyType: 'aes',
          spec: spec({ decrypt: true }),
        }),
      );
      t.ok(isDecryptFailure(code), `${mechanism}: unwrap with the wrong key fails (got ${code})`);
      const code2 = await codeOf(
        hsm.run({
          op: 'unwrapKey',
          mechanism,
          unwrappingKey: wrapper.ref,
          wrapped: flip(wrapped, 5),
          keyType: 'aes',
          spec: spec({ decrypt: true }),
        }),
      );
      t.ok(isDecryptFailure(code2), `${mechanism}: bit-flipped blob fails (got ${code2})`);
      t.equal(
        await codeOf(hsm.run({ op: 'wrapKey', mechanism, wrappingKey: wrapper.ref, key: locked.ref })),
        'CKR_KEY_UNEXTRACTABLE',
        `${mechanism}: a non-extractable key cannot be wrapped out`,
      );
    }
    t.equal(
      await codeOf(
        hsm.run({ op: 'wrapKey', mechanism: 'AES_KEY_WRAP', wrappingKey: dataKey.ref, key: dataKey.ref }),
      ),
      'CKR_KEY_FUNCTION_NOT_PERMITTED',
      'wrapping needs CKA_WRAP',
    );

    if (caps.oaepSha1) {
      const { wrapped } = await hsm.run({
        op: 'wrapKey',
        mechanism: 'RSA_PKCS_OAEP',
        wrappingKey: rsaPubRef,
        key: dataKey.ref,
        hash: 'sha1',
      });
      t.equal(wrapped.length, 256, 'RSA-OAEP wrap');
      const target = spec({ decrypt: true });
      await hsm.run({
        op: 'unwrapKey',
        mechanism: 'RSA_PKCS_OAEP',
        unwrappingKey: rsaPrivRef,
        wrapped,
        hash: 'sha1',
        keyType: 'aes',
        spec: target,
      });
      const back = await hsm.run({
        op: 'decrypt',
        key: ref(target, 'secret'),
        iv: sealed.iv,
        ciphertext: sealed.ciphertext,
      });
      t.same(back.plaintext, pt, 'RSA-OAEP unwrapped key is the same key');
      t.equal(
        await codeOf(
          hsm.run({
            op: 'wrapKey',
            mechanism: 'RSA_PKCS_OAEP',
            wrappingKey: rsaPubRef,
            key: locked.ref,
            hash: 'sha1',
          }),
        ),
        'CKR_KEY_UNEXTRACTABLE',
        'RSA-OAEP: non-extractable keys stay in',
      );
    }

    if (caps.rsaAesKeyWrap) {
      // BYOK: build a CKM_RSA_AES_KEY_WRAP blob outside the HSM around known key material,
      // then prove the HSM holds exactly that key by decrypting its GCM output here.
      const hash = caps.oaepSha1 ? 'sha1' : 'sha256';
      const material = randomBytes(32);
      const eph = randomBytes(32);
      const head = publicEncrypt(
        { key: rsaNode, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash },
        eph,
      );
      const kwp = createCipheriv('id-aes256-wrap-pad', eph, Buffer.from('a65959a6', 'hex'));
      const blob = Buffer.concat([head, kwp.update(material), kwp.final()]);
      const target = spec({ encrypt: true });
      await hsm.run({
        op: 'unwrapKey',
        mechanism: 'RSA_AES_KEY_WRAP',
        unwrappingKey: rsaPrivRef,
        wrapped: blob,
        aesKeyBits: 256,
        hash,
        keyType: 'aes',
        spec: target,
      });
      const out = await hsm.run({
        op: 'encrypt',
        key: ref(target, 'secret'),
        plaintext: pt,
        aad: Buffer.from('x'),
      });
      const d = createDecipheriv('aes-256-gcm', material, out.iv);
      d.setAAD(Buffer.from('x'));
      d.setAuthTag(out.ciphertext.subarray(out.ciphertext.length - 16));
      t.same(
        Buffer.concat([d.update(out.ciphertext.subarray(0, out.ciphertext.length - 16)), d.final()]),
        pt,
        'RSA AES key wrap imports the exact key',
      );
      const code = await codeOf(
        hsm.run({
          op: 'unwrapKey',
          mechanism: 'RSA_AES_KEY_WRAP',
          unwrappingKey: rsaPrivRef,
          wrapped: flip(blob, blob.length - 3),
          aesKeyBits: 256,
          hash,
          keyType: 'aes',
          spec: spec({ encrypt: true }),
        }),
      );
      t.ok(isDecryptFailure(code), `RSA AES key wrap: corrupted blob fails (got ${code})`);
    }
  });

  await t.test('sign and verify', async (t) => {
    const ecPub = spec({ verify: true });
    const ecPriv = spec({ sign: true });
    const ec = await hsm.run({
      op: 'generateKeyPair',
      kind: 'ec',
      curve: 'P-256',
      publicSpec: ecPub,
      privateSpec: ecPriv,
    });
    const pubAttrs = (await hsm.run({ op: 'getAttributes', handle: ec.publicHandle })).attrs;
    t.equal(pubAttrs.keyType, 'ec');
    t.same(pubAttrs.ecParams, Buffer.from('06082a8648ce3d030107', 'hex'), 'CKA_EC_PARAMS is the P-256 OID');
    const point = pubAttrs.ecPoint!;
    const raw = point.length === 67 && point[0] === 0x04 && point[1] === 0x41 ? point.subarray(2) : point;
    t.ok(raw.length === 65 && raw[0] === 0x04, 'an uncompressed P-256 point');
    const ecNode = createPublicKey({
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: raw.subarray(1, 33).toString('base64url'),
        y: raw.subarray(33).toString('base64url'),
      },
      format: 'jwk',
    });

    const msg = Buffer.from('the audit checkpoint');
    const digest = createHash('sha256').update(msg).digest();
    const { signature } = await hsm.run({
      op: 'sign',
      key: ref(ecPriv, 'private'),
      mechanism: 'ECDSA',
      data: digest,
    });
    t.equal(signature.length, 64, 'ECDSA r || s');
    t.ok(
      nodeVerify('sha256', msg, { key: ecNode, dsaEncoding: 'ieee-p1363' }, signature),
      'ECDSA over the caller digest verifies outside',
    );
    t.same(
      await hsm.run({ op: 'verify', key: ref(ecPub, 'public'), mechanism: 'ECDSA', data: digest, signature }),
      { valid: true },
    );
    t.same(
      await hsm.run({
        op: 'verify',
        key: ref(ecPub, 'public'),
        mechanism: 'ECDSA',
        data: digest,
        signature: flip(signature, 10),
      }),
      { valid: false },
      'a flipped signature does not verify',
    );
    t.same(
      await hsm.run({
        op: 'verify',
        key: ref(ecPub, 'public'),
        mechanism: 'ECDSA',
        data: flip(digest, 0),
        signature,
      }),
      { valid: false },
      'another digest does not verify',
    );

    const data = randomBytes(100);
    const pss = await hsm.run({ op: 'sign', key: rsaPrivRef, mechanism: 'SHA256_RSA_PKCS_PSS', data });
    t.equal(pss.signature.length, 256);
    t.ok(
      nodeVerify(
        'sha256',
        data,
        {
          key: rsaNode,
          padding: constants.RSA_PKCS1_PSS_PADDING,
          saltLength: constants.RSA_PSS_SALTLEN_AUTO,
        },
        pss.signature,
      ),
      'RSA-PSS verifies outside',
    );
    t.same(
      await hsm.run({
        op: 'verify',
        key: rsaPubRef,
        mechanism: 'SHA256_RSA_PKCS_PSS',
        data,
        signature: pss.signature,
      }),
      { valid: true },
    );
    t.same(
      await hsm.run({
        op: 'verify',
        key: rsaPubRef,
        mechanism: 'SHA256_RSA_PKCS_PSS',
        data: flip(data, 0),
        signature: pss.signature,
      }),
      { valid: false },
    );
    const wrongType = await codeOf(hsm.run({ op: 'sign', key: kek.ref, mechanism: 'ECDSA', data: digest }));
    t.ok(
      wrongType === 'CKR_KEY_TYPE_INCONSISTENT' || wrongType === 'CKR_KEY_FUNCTION_NOT_PERMITTED',
      `ECDSA with an AES key is refused (got ${wrongType})`,
    );
    const noSign = spec({});
    await hsm.run({
      op: 'generateKeyPair',
      kind: 'ec',
      publicSpec: spec({ verify: true }),
      privateSpec: noSign,
    });
    t.equal(
      await codeOf(hsm.run({ op: 'sign', key: ref(noSign, 'private'), mechanism: 'ECDSA', data: digest })),
      'CKR_KEY_FUNCTION_NOT_PERMITTED',
      'signing needs CKA_SIGN',
    );
  });

  await t.test('find, getAttributes, setAttributes', async (t) => {
    const k = await aes({ encrypt: true });
    t.same((await hsm.run({ op: 'find', label: k.spec.label })).handles, [k.handle], 'by label');
    t.same((await hsm.run({ op: 'find', id: k.spec.id })).handles, [k.handle], 'by id');
    t.same(
      (await hsm.run({ op: 'find', cls: 'secret', id: k.spec.id })).handles,
      [k.handle],
      'by class and id',
    );
    t.same((await hsm.run({ op: 'find', cls: 'private', id: k.spec.id })).handles, [], 'class filters');
    t.same((await hsm.run({ op: 'find', label: `${run}-nothing` })).handles, [], 'unknown label');
    const byKek = (await hsm.run({ op: 'find', id: kek.spec.id })).handles;
    t.ok(byKek.includes(kek.handle), 'token objects are found');

    const newLabel = `${run}-renamed`;
    const newId = randomBytes(16);
    await hsm.run({
      op: 'setAttributes',
      handle: k.handle,
      attrs: { label: newLabel, id: newId, usage: { decrypt: true } },
    });
    const attrs = (await hsm.run({ op: 'getAttributes', handle: k.handle })).attrs;
    t.equal(attrs.label, newLabel);
    t.same(attrs.id, newId);
    t.equal(attrs.usage.decrypt, true, 'usage added');
    t.equal(attrs.usage.encrypt, true, 'unmentioned usage kept');
    t.same((await hsm.run({ op: 'find', label: newLabel })).handles, [k.handle], 'found by the new label');
    const enc = await hsm.run({
      op: 'encrypt',
      key: { id: newId, cls: 'secret', token: false },
      plaintext: Buffer.from('x'),
    });
    t.same(
      (
        await hsm.run({
          op: 'decrypt',
          key: { id: newId, cls: 'secret', token: false },
          iv: enc.iv,
          ciphertext: enc.ciphertext,
        })
      ).plaintext,
      Buffer.from('x'),
    );
    const bogus = 0x7ffffff0;
    t.ok(
      /HANDLE_INVALID/.test(await codeOf(hsm.run({ op: 'getAttributes', handle: bogus }))),
      'unknown handle',
    );
    t.ok(
      /HANDLE_INVALID/.test(
        await codeOf(hsm.run({ op: 'setAttributes', handle: bogus, attrs: { label: 'x' } })),
      ),
      'unknown handle (set)',
    );
  });

  await t.test(
    'copyObject makes a usable session copy',
    { skip: caps.sessionCopy ? false : 'token reports no session copies' },
    async (t) => {
      const pt = randomBytes(32);
      const enc = await hsm.run({ op: 'encrypt', key: kek.ref, plaintext: pt });
      const { handle } = await hsm.run({
        op: 'copyObject',
        handle: kek.handle,
        token: false,
        label: `${run}-copy`,
      });
      t.not(handle, kek.handle);
      const attrs = (await hsm.run({ op: 'getAttributes', handle })).attrs;
      t.equal(attrs.token, false, 'a session object');
      t.equal(attrs.sensitive, true, 'still sensitive');
      t.equal(attrs.extractable, false, 'still not extractable');
      t.equal(attrs.label, `${run}-copy`);
      t.equal(attrs.valueLen, 32);
      const copyId = randomBytes(16);
      await hsm.run({ op: 'setAttributes', handle, attrs: { id: copyId } });
      const out = await hsm.run({
        op: 'decrypt',
        key: { id: copyId, cls: 'secret', token: false },
        iv: enc.iv,
        ciphertext: enc.ciphertext,
      });
      t.same(out.plaintext, pt, 'the copy opens what the original sealed');
      await hsm.run({ op: 'destroy', handle });
    },
  );

  await t.test('destroy and evictKey', async (t) => {
    const k = await aes({ encrypt: true, decrypt: true });
    const enc = await hsm.run({ op: 'encrypt', key: k.ref, plaintext: Buffer.from('abc') });
    await hsm.evictKey(k.ref);
    const dec = await hsm.run({ op: 'decrypt', key: k.ref, iv: enc.iv, ciphertext: enc.ciphertext });
    t.same(dec.plaintext, Buffer.from('abc'), 'still usable after evictKey (re-resolved)');
    await hsm.run({ op: 'destroy', handle: k.handle });
    t.same((await hsm.run({ op: 'find', id: k.spec.id })).handles, [], 'gone from find');
    t.ok(
      /HANDLE_INVALID/.test(await codeOf(hsm.run({ op: 'getAttributes', handle: k.handle }))),
      'handle invalid',
    );
    t.equal(
      await codeOf(hsm.run({ op: 'encrypt', key: k.ref, plaintext: Buffer.from('abc') })),
      'HYOKD_KEY_NOT_FOUND',
      'a cached handle to a destroyed key re-resolves to not found',
    );
    await hsm.evictKey(k.ref);
    t.equal(
      await codeOf(hsm.run({ op: 'encrypt', key: k.ref, plaintext: Buffer.from('abc') })),
      'HYOKD_KEY_NOT_FOUND',
      'and after evictKey',
    );
    t.ok(
      /HANDLE_INVALID/.test(await codeOf(hsm.run({ op: 'destroy', handle: k.handle }))),
      'double destroy fails',
    );
  });

  await t.test('batch: one result per item, in order', async (t) => {
    const pt = randomBytes(32);
    const enc = await hsm.run({ op: 'encrypt', key: kek.ref, plaintext: pt });
    const results = await hsm.batch([
      { op: 'encrypt', key: kek.ref, plaintext: pt },
      { op: 'decrypt', key: kek.ref, iv: enc.iv, ciphertext: flip(enc.ciphertext, 33) },
      { op: 'random', length: 7 },
      { op: 'decrypt', key: { id: randomBytes(16), cls: 'secret' }, iv: enc.iv, ciphertext: enc.ciphertext },
      { op: 'decrypt', key: kek.ref, iv: enc.iv, ciphertext: enc.ciphertext },
    ]);
    t.equal(results.length, 5);
    t.same(
      results.map((r) => r.ok),
      [true, false, true, false, true],
      'successes and failures in place',
    );
    const [r0, r1, r2, r3, r4] = results;
    if (r0?.ok) t.equal((r0 as unknown as { ciphertext: Buffer }).ciphertext.length, 48);
    if (r1 && !r1.ok) t.ok(isDecryptFailure(r1.error.code), `bad tag item: ${r1.error.code}`);
    if (r2?.ok) t.equal((r2 as unknown as { bytes: Buffer }).bytes.length, 7);
    if (r3 && !r3.ok) t.equal(r3.error.code, 'HYOKD_KEY_NOT_FOUND');
    if (r4?.ok) t.same((r4 as unknown as { plaintext: Buffer }).plaintext, pt);
  });

  await t.test('an empty batch yields no results', async (t) => {
    t.same(await hsm.batch([]), []);
  });

  await t.test('a few hundred concurrent mixed operations', async (t) => {
    const k2 = await aes({ encrypt: true, decrypt: true });
    const jobs: Promise<boolean>[] = [];
    for (let i = 0; i < 300; i++) {
      const key = i % 2 === 0 ? kek.ref : k2.ref;
      switch (i % 4) {
        case 0:
        case 1:
          jobs.push(
            (async () => {
              const pt = randomBytes(16 + (i % 17));
              const aad = Buffer.from(`item-${i}`);
              const e = await hsm.run({ op: 'encrypt', key, plaintext: pt, aad });
              const d = await hsm.run({ op: 'decrypt', key, iv: e.iv, ciphertext: e.ciphertext, aad });
              return d.plaintext.equals(pt);
            })(),
          );
          break;
        case 2:
          jobs.push(
            hsm.run({ op: 'random', length: 1 + (i % 64) }).then((r) => r.bytes.length === 1 + (i % 64)),
          );
          break;
        default:
          jobs.push(
            (async () => {
              const pts = [randomBytes(32), randomBytes(32)];
              const encs = await hsm.batch(
                pts.map((plaintext) => ({ op: 'encrypt' as const, key, plaintext })),
              );
              const decs = await hsm.batch(
                encs.map((e) => {
                  const v = e as unknown as { iv: Buffer; ciphertext: Buffer };
                  return { op: 'decrypt' as const, key, iv: v.iv, ciphertext: v.ciphertext };
                }),
              );
              return decs.every(
                (d, j) => d.ok && (d as unknown as { plaintext: Buffer }).plaintext.equals(pts[j]!),
              );
            })(),
          );
      }
    }
    const outcomes = await Promise.all(jobs);
    t.equal(outcomes.filter((ok) => !ok).length, 0, 'all 300 correct');
    const c = hsm.counters();
    t.ok((c.ops['encrypt'] ?? 0) >= 300, 'counters count encrypts');
  });
}
