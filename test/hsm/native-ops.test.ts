// Every operation of the native engine round-trips on a real SoftHSM2 token, and the
// ways it can fail come back with the right codes.
import t from 'tap';
import {
  createHash,
  createPublicKey,
  createVerify,
  createCipheriv,
  randomBytes,
  publicEncrypt,
  constants,
  verify as nodeVerify,
} from 'node:crypto';
import { createTestToken } from '../helpers/softhsm.js';
import { HsmError } from '../../src/hsm/errors.js';
import type { KeyRef } from '../../src/hsm/types.js';

const tok = await createTestToken('ops');
const hsm = await tok.open({ sessions: 2 });
t.teardown(async () => {
  await hsm.close();
  tok.cleanup();
});

const kekId = Buffer.from('kek-1');
const kek: KeyRef = { id: kekId, cls: 'secret' };
const otherId = Buffer.from('kek-2');
const other: KeyRef = { id: otherId, cls: 'secret' };
const aesUsage = { encrypt: true, decrypt: true, wrap: true, unwrap: true };
await hsm.run({ op: 'generateKey', keyBits: 256, spec: { id: kekId, label: 'kek-1', usage: aesUsage } });
await hsm.run({ op: 'generateKey', keyBits: 256, spec: { id: otherId, label: 'kek-2', usage: aesUsage } });

t.test('module, token and mechanism info', async (t) => {
  t.match(hsm.module.manufacturerId, /SoftHSM/i);
  t.match(hsm.module.cryptokiVersion, /^2\.\d+$/);
  t.equal(hsm.token.label, 'ops');
  t.ok(hsm.token.serialNumber.length > 0);
  t.equal(hsm.token.flags.tokenInitialized, true);
  const names = hsm.mechanisms().map((m) => m.name);
  t.ok(names.includes('CKM_AES_GCM'));
  t.ok(names.includes('CKM_AES_KEY_WRAP_PAD'));
  const gcm = hsm.mechanisms().find((m) => m.name === 'CKM_AES_GCM');
  t.equal(gcm?.flags.encrypt, true);
});

t.test('capabilities are probed, not guessed', async (t) => {
  const caps = await hsm.capabilities();
  t.equal(caps.oaepSha1, true);
  // SoftHSM2 2.6.1 refuses SHA-256 OAEP (CKR_ARGUMENTS_BAD): reported, not assumed.
  t.equal(caps.oaepSha256, false);
  t.equal(caps.aesKeyWrapPad, true);
  t.equal(caps.sessionCopy, true);
  t.equal(typeof caps.rsaAesKeyWrap, 'boolean');
});

t.test('random', async (t) => {
  const a = await hsm.run({ op: 'random', length: 32 });
  const b = await hsm.run({ op: 'random', length: 32 });
  t.equal(a.bytes.length, 32);
  t.not(a.bytes.toString('hex'), b.bytes.toString('hex'));
  t.equal((await hsm.run({ op: 'random', length: 0 })).bytes.length, 0);
});

t.test('generated AES key is sensitive, non-extractable, with its usage', async (t) => {
  const { handles } = await hsm.run({ op: 'find', cls: 'secret', id: kekId });
  t.equal(handles.length, 1);
  const { attrs } = await hsm.run({ op: 'getAttributes', handle: handles[0] });
  t.equal(attrs.cls, 'secret');
  t.equal(attrs.keyType, 'aes');
  t.equal(attrs.valueLen, 32);
  t.equal(attrs.sensitive, true);
  t.equal(attrs.extractable, false);
  t.equal(attrs.neverExtractable, true);
  t.equal(attrs.token, true);
  t.equal(attrs.label, 'kek-1');
  t.same(attrs.id, kekId);
  t.same(attrs.usage, {
    encrypt: true,
    decrypt: true,
    wrap: true,
    unwrap: true,
    sign: false,
    verify: false,
    derive: false,
  });
});

t.test('AES-256-GCM round trip with AAD; HSM-drawn IVs differ', async (t) => {
  const dek = randomBytes(32);
  const aad = Buffer.from('tenant=a');
  const e1 = await hsm.run({ op: 'encrypt', key: kek, plaintext: dek, aad });
  const e2 = await hsm.run({ op: 'encrypt', key: kek, plaintext: dek, aad });
  t.equal(e1.iv.length, 12);
  t.equal(e1.ciphertext.length, 48, 'ciphertext and 16-byte tag');
  t.not(e1.iv.toString('hex'), e2.iv.toString('hex'));
  const d = await hsm.run({ op: 'decrypt', key: kek, iv: e1.iv, ciphertext: e1.ciphertext, aad });
  t.same(d.plaintext, dek);
  const withIv = await hsm.run({ op: 'encrypt', key: kek, plaintext: dek, iv: Buffer.alloc(12, 1) });
  t.same(withIv.iv, Buffer.alloc(12, 1));
});

t.test('GCM failures: wrong key, wrong AAD, truncated, bit-flipped', async (t) => {
  const dek = randomBytes(32);
  const aad = Buffer.from('ctx');
  const { iv, ciphertext } = await hsm.run({ op: 'encrypt', key: kek, plaintext: dek, aad });
  const flipped = Buffer.from(ciphertext);
  flipped[5] ^= 0x01;
  const tagFlipped = Buffer.from(ciphertext);
  tagFlipped[ciphertext.length - 1] ^= 0x80;
  const results = await hsm.batch([
    { op: 'decrypt', key: other, iv, ciphertext, aad },
    { op: 'decrypt', key: kek, iv, ciphertext, aad: Buffer.from('cty') },
    { op: 'decrypt', key: kek, iv, ciphertext: ciphertext.subarray(0, 40), aad },
    { op: 'decrypt', key: kek, iv, ciphertext: flipped, aad },
    { op: 'decrypt', key: kek, iv, ciphertext: tagFlipped, aad },
    { op: 'decrypt', key: kek, iv, ciphertext: ciphertext.subarray(0, 8), aad },
    { op: 'decrypt', key: kek, iv, ciphertext, aad },
  ]);
  // SoftHSM2 reports a GCM tag mismatch as CKR_GENERAL_ERROR; the spec's code is
  // CKR_ENCRYPTED_DATA_INVALID. Either way it is a data error: not retriable.
  const dataCodes = ['CKR_GENERAL_ERROR', 'CKR_ENCRYPTED_DATA_INVALID', 'CKR_ENCRYPTED_DATA_LEN_RANGE'];
  for (const [i, r] of results.slice(0, 6).entries()) {
    t.equal(r.ok, false, `case ${i} fails`);
    if (!r.ok) {
      t.ok(dataCodes.includes(r.error.code), `case ${i}: ${r.error.code}`);
      t.equal(r.error.retriable, false);
      t.ok(r.error instanceof HsmError);
    }
  }
  const last = results[6];
  t.equal(last.ok, true, 'the session still works after data errors');
  if (last.ok) t.same((last as unknown as { plaintext: Buffer }).plaintext, dek);
});

t.test('unknown key is HYOKD_KEY_NOT_FOUND with the caller stack', async (t) => {
  const err = await hsm
    .run({ op: 'encrypt', key: { id: Buffer.from('nope'), cls: 'secret' }, plaintext: Buffer.alloc(32) })
    .catch((e: unknown) => e);
  t.ok(err instanceof HsmError);
  t.equal((err as HsmError).code, 'HYOKD_KEY_NOT_FOUND');
  t.equal((err as HsmError).rv, -1);
  t.match((err as HsmError).stack ?? '', /native-ops\.test/);
});

t.test('AES key wrap with and without padding', async (t) => {
  const tgtId = Buffer.from('exportable-1');
  await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id: tgtId, label: 'exp', extractable: true, usage: { encrypt: true } },
  });
  const tgt: KeyRef = { id: tgtId, cls: 'secret' };
  const kw = await hsm.run({ op: 'wrapKey', mechanism: 'AES_KEY_WRAP', wrappingKey: kek, key: tgt });
  t.equal(kw.wrapped.length, 40);
  const kwp = await hsm.run({ op: 'wrapKey', mechanism: 'AES_KEY_WRAP_PAD', wrappingKey: kek, key: tgt });
  t.equal(kwp.wrapped.length, 40);
  for (const [mechanism, wrapped] of [
    ['AES_KEY_WRAP', kw.wrapped],
    ['AES_KEY_WRAP_PAD', kwp.wrapped],
  ] as const) {
    const id = Buffer.from(`unwrapped-${mechanism}`);
    const u = await hsm.run({
      op: 'unwrapKey',
      mechanism,
      unwrappingKey: kek,
      wrapped,
      keyType: 'aes',
      spec: { id, label: 'u', usage: { encrypt: true, decrypt: true } },
    });
    const { attrs } = await hsm.run({ op: 'getAttributes', handle: u.handle });
    t.equal(attrs.sensitive, true);
    t.equal(attrs.extractable, false);
    // The unwrapped key is the same key: it decrypts what the original encrypts.
    const e = await hsm.run({ op: 'encrypt', key: tgt, plaintext: Buffer.from('same key') });
    const d = await hsm.run({
      op: 'decrypt',
      key: { id, cls: 'secret' },
      iv: e.iv,
      ciphertext: e.ciphertext,
    });
    t.same(d.plaintext, Buffer.from('same key'));
    const bad = Buffer.from(wrapped);
    bad[3] ^= 1;
    const r = await hsm.batch([
      {
        op: 'unwrapKey',
        mechanism,
        unwrappingKey: kek,
        wrapped: bad,
        keyType: 'aes',
        spec: { id: Buffer.from('bad'), label: 'bad', usage: {} },
      },
    ]);
    t.equal(r[0].ok, false, `${mechanism}: tampered blob refused`);
  }
  // A sensitive, non-extractable key cannot be wrapped out.
  const out = await hsm.batch([
    { op: 'wrapKey', mechanism: 'AES_KEY_WRAP_PAD', wrappingKey: kek, key: other },
  ]);
  t.equal(out[0].ok, false);
  if (!out[0].ok) t.equal(out[0].error.code, 'CKR_KEY_UNEXTRACTABLE');
});

const rsaId = Buffer.from('rsa-1');
const rsaPub: KeyRef = { id: rsaId, cls: 'public' };
const rsaPriv: KeyRef = { id: rsaId, cls: 'private' };

t.test('RSA-3072 pair, OAEP encrypt/decrypt, PSS sign/verify', async (t) => {
  const pair = await hsm.run({
    op: 'generateKeyPair',
    kind: 'rsa',
    modulusBits: 3072,
    publicSpec: { id: rsaId, label: 'rsa-1', usage: { encrypt: true, verify: true, wrap: true } },
    privateSpec: { id: rsaId, label: 'rsa-1', usage: { decrypt: true, sign: true, unwrap: true } },
  });
  const { attrs } = await hsm.run({ op: 'getAttributes', handle: pair.publicHandle });
  t.equal(attrs.modulus?.length, 384);
  t.same(attrs.publicExponent, Buffer.from([1, 0, 1]));
  const priv = await hsm.run({ op: 'getAttributes', handle: pair.privateHandle });
  t.equal(priv.attrs.sensitive, true);
  t.equal(priv.attrs.extractable, false);

  const msg = randomBytes(32);
  const c = await hsm.run({ op: 'rsaEncrypt', key: rsaPub, hash: 'sha1', data: msg });
  t.equal(c.data.length, 384);
  const p = await hsm.run({ op: 'rsaDecrypt', key: rsaPriv, hash: 'sha1', data: c.data });
  t.same(p.data, msg);
  // Encrypted outside the HSM with the exported public key: interoperable.
  const spki = createPublicKey({
    key: {
      kty: 'RSA',
      n: attrs.modulus!.toString('base64url'),
      e: attrs.publicExponent!.toString('base64url'),
    },
    format: 'jwk',
  });
  const ext = publicEncrypt({ key: spki, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, msg);
  t.same((await hsm.run({ op: 'rsaDecrypt', key: rsaPriv, hash: 'sha1', data: ext })).data, msg);
  const sha256 = await hsm.batch([{ op: 'rsaEncrypt', key: rsaPub, hash: 'sha256', data: msg }]);
  t.equal(sha256[0].ok, false, 'SoftHSM2 2.6.1 has no SHA-256 OAEP');
  if (!sha256[0].ok)
    t.ok(['CKR_ARGUMENTS_BAD', 'CKR_MECHANISM_PARAM_INVALID'].includes(sha256[0].error.code));
  const bad = Buffer.from(c.data);
  bad[10] ^= 1;
  const dec = await hsm.batch([{ op: 'rsaDecrypt', key: rsaPriv, hash: 'sha1', data: bad }]);
  t.equal(dec[0].ok, false);

  const data = Buffer.from('audit checkpoint');
  const sig = await hsm.run({ op: 'sign', key: rsaPriv, mechanism: 'SHA256_RSA_PKCS_PSS', data });
  t.equal(sig.signature.length, 384);
  const ok = await hsm.run({
    op: 'verify',
    key: rsaPub,
    mechanism: 'SHA256_RSA_PKCS_PSS',
    data,
    signature: sig.signature,
  });
  t.equal(ok.valid, true);
  const no = await hsm.run({
    op: 'verify',
    key: rsaPub,
    mechanism: 'SHA256_RSA_PKCS_PSS',
    data: Buffer.from('other'),
    signature: sig.signature,
  });
  t.equal(no.valid, false);
  const v = createVerify('sha256').update(data);
  t.ok(
    v.verify({ key: spki, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig.signature),
    'node verifies the PSS signature',
  );
});

t.test('EC P-256 pair, ECDSA over a digest, verified by node', async (t) => {
  const id = Buffer.from('ec-1');
  const pair = await hsm.run({
    op: 'generateKeyPair',
    kind: 'ec',
    curve: 'P-256',
    publicSpec: { id, label: 'ec-1', usage: { verify: true } },
    privateSpec: { id, label: 'ec-1', usage: { sign: true } },
  });
  const { attrs } = await hsm.run({ op: 'getAttributes', handle: pair.publicHandle });
  t.same(attrs.ecParams, Buffer.from('06082a8648ce3d030107', 'hex'));
  t.equal(attrs.ecPoint?.[0], 0x04, 'DER OCTET STRING');
  const point = attrs.ecPoint!.subarray(2);
  t.equal(point.length, 65);
  const digest = createHash('sha256').update('hello').digest();
  const { signature } = await hsm.run({
    op: 'sign',
    key: { id, cls: 'private' },
    mechanism: 'ECDSA',
    data: digest,
  });
  t.equal(signature.length, 64, 'raw r||s');
  const { valid } = await hsm.run({
    op: 'verify',
    key: { id, cls: 'public' },
    mechanism: 'ECDSA',
    data: digest,
    signature,
  });
  t.equal(valid, true);
  const jwk = {
    kty: 'EC',
    crv: 'P-256',
    x: point.subarray(1, 33).toString('base64url'),
    y: point.subarray(33).toString('base64url'),
  };
  const pub = createPublicKey({ key: jwk, format: 'jwk' });
  t.ok(nodeVerify('sha256', Buffer.from('hello'), { key: pub, dsaEncoding: 'ieee-p1363' }, signature));
});

t.test('RSA-AES key wrap import (CKM_RSA_AES_KEY_WRAP or its two-step equivalent)', async (t) => {
  const { attrs } = await hsm.run({
    op: 'getAttributes',
    handle: (await hsm.run({ op: 'find', cls: 'public', id: rsaId })).handles[0],
  });
  const spki = createPublicKey({
    key: {
      kty: 'RSA',
      n: attrs.modulus!.toString('base64url'),
      e: attrs.publicExponent!.toString('base64url'),
    },
    format: 'jwk',
  });
  const material = randomBytes(32);
  const eph = randomBytes(32);
  const rsaPart = publicEncrypt(
    { key: spki, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
    eph,
  );
  const kwp = createCipheriv('id-aes256-wrap-pad', eph, Buffer.from('a65959a6', 'hex'));
  const aesPart = Buffer.concat([kwp.update(material), kwp.final()]);
  const blob = Buffer.concat([rsaPart, aesPart]);
  const id = Buffer.from('imported-1');
  const u = await hsm.run({
    op: 'unwrapKey',
    mechanism: 'RSA_AES_KEY_WRAP',
    unwrappingKey: rsaPriv,
    wrapped: blob,
    keyType: 'aes',
    spec: { id, label: 'imported', usage: { encrypt: true, decrypt: true } },
  });
  const got = await hsm.run({ op: 'getAttributes', handle: u.handle });
  t.equal(got.attrs.sensitive, true);
  t.equal(got.attrs.extractable, false);
  t.equal(got.attrs.local, false, 'imported, not generated on the token');
  // The imported key is the material: a ciphertext made outside decrypts inside.
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', material, iv);
  const ct = Buffer.concat([c.update(Buffer.from('dek')), c.final(), c.getAuthTag()]);
  const d = await hsm.run({ op: 'decrypt', key: { id, cls: 'secret' }, iv, ciphertext: ct });
  t.same(d.plaintext, Buffer.from('dek'));
  const tampered = Buffer.from(blob);
  tampered[blob.length - 3] ^= 1;
  const r = await hsm.batch([
    {
      op: 'unwrapKey',
      mechanism: 'RSA_AES_KEY_WRAP',
      unwrappingKey: rsaPriv,
      wrapped: tampered,
      keyType: 'aes',
      spec: { id: Buffer.from('t'), label: 't', usage: {} },
    },
    {
      op: 'unwrapKey',
      mechanism: 'RSA_AES_KEY_WRAP',
      unwrappingKey: rsaPriv,
      wrapped: blob.subarray(0, 100),
      keyType: 'aes',
      spec: { id: Buffer.from('t'), label: 't', usage: {} },
    },
  ]);
  t.equal(r[0].ok, false, 'tampered blob refused');
  t.equal(r[1].ok, false, 'short blob refused');
});

t.test('find, set attributes, copy, destroy', async (t) => {
  const id = Buffer.from('scratch');
  const g = await hsm.run({
    op: 'generateKey',
    keyBits: 128,
    spec: { id, label: 'scratch', usage: { encrypt: true } },
  });
  t.same((await hsm.run({ op: 'find', label: 'scratch' })).handles, [g.handle]);
  await hsm.run({
    op: 'setAttributes',
    handle: g.handle,
    attrs: { label: 'renamed', usage: { encrypt: false, decrypt: true } },
  });
  const a = await hsm.run({ op: 'getAttributes', handle: g.handle });
  t.equal(a.attrs.label, 'renamed');
  t.equal(a.attrs.usage.encrypt, false);
  t.equal(a.attrs.usage.decrypt, true);
  t.equal(a.attrs.valueLen, 16);
  const copy = await hsm.run({ op: 'copyObject', handle: g.handle, token: false });
  const c = await hsm.run({ op: 'getAttributes', handle: copy.handle });
  t.equal(c.attrs.token, false);
  t.equal(c.attrs.sensitive, true);
  t.equal(c.attrs.extractable, false);
  await hsm.run({ op: 'destroy', handle: copy.handle });
  await hsm.run({ op: 'destroy', handle: g.handle });
  t.same((await hsm.run({ op: 'find', label: 'renamed' })).handles, []);
  const gone = await hsm.batch([{ op: 'getAttributes', handle: g.handle }]);
  t.equal(gone[0].ok, false);
  if (!gone[0].ok) t.equal(gone[0].error.code, 'CKR_OBJECT_HANDLE_INVALID');
});

t.test('a stale cached handle is re-resolved once', async (t) => {
  const id = Buffer.from('moving');
  const key: KeyRef = { id, cls: 'secret' };
  const g1 = await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id, label: 'm', usage: { encrypt: true, decrypt: true } },
  });
  await hsm.run({ op: 'encrypt', key, plaintext: Buffer.from('a') }); // caches g1's handle
  await hsm.run({ op: 'destroy', handle: g1.handle });
  await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id, label: 'm', usage: { encrypt: true, decrypt: true } },
  });
  const before = hsm.counters().handleResolves;
  const e = await hsm.run({ op: 'encrypt', key, plaintext: Buffer.from('a') });
  t.equal(e.ciphertext.length, 17);
  t.ok(hsm.counters().handleResolves > before);
});

t.test('batch results are per item and in order', async (t) => {
  const ops = Array.from({ length: 50 }, (_, i) =>
    i % 5 === 0
      ? ({
          op: 'encrypt',
          key: { id: Buffer.from('missing'), cls: 'secret' },
          plaintext: Buffer.from([i]),
        } as const)
      : ({ op: 'encrypt', key: kek, plaintext: Buffer.from([i]), aad: Buffer.from([i]) } as const),
  );
  const res = await hsm.batch([...ops]);
  t.equal(res.length, 50);
  const dec = await hsm.batch(
    res.flatMap((r, i) =>
      r.ok
        ? [
            {
              op: 'decrypt' as const,
              key: kek,
              iv: (r as unknown as { iv: Buffer }).iv,
              ciphertext: (r as unknown as { ciphertext: Buffer }).ciphertext,
              aad: Buffer.from([i]),
            },
          ]
        : [],
    ),
  );
  t.equal(dec.length, 40);
  let j = 0;
  for (let i = 0; i < 50; i++) {
    if (i % 5 === 0) {
      t.equal(res[i].ok, false);
      continue;
    }
    const d = dec[j++];
    t.ok(d.ok && (d as unknown as { plaintext: Buffer }).plaintext[0] === i, `item ${i}`);
  }
});

t.test('counters', async (t) => {
  const c = hsm.counters();
  t.equal(c.state, 'ready');
  t.equal(c.sessionsTotal, 2);
  t.equal(c.sessionsBusy + c.sessionsIdle, 2);
  t.ok(c.ops.encrypt > 0);
  t.ok(c.ops.decrypt > 0);
  t.ok((c.errors.HYOKD_KEY_NOT_FOUND ?? 0) > 0);
  t.ok((c.errors.CKR_GENERAL_ERROR ?? 0) + (c.errors.CKR_ENCRYPTED_DATA_INVALID ?? 0) > 0);
});
