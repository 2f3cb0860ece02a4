// Bad arguments from JS raise TypeError or RangeError, never a crash, and name the item.
import t from 'tap';
import { createTestToken } from '../helpers/softhsm.js';
import { addon } from '../../src/hsm/native.js';
import type { Op } from '../../src/hsm/types.js';

const tok = await createTestToken('args');
const hsm = await tok.open({ sessions: 1 });
t.teardown(async () => {
  await hsm.close();
  tok.cleanup();
});

const key = { id: Buffer.from('k'), cls: 'secret' };
const spec = { id: Buffer.from('x'), label: 'x', usage: { encrypt: true } };
const bad: Array<[string, unknown, 'TypeError' | 'RangeError']> = [
  ['not an object', 42, 'TypeError'],
  ['null', null, 'TypeError'],
  ['array', [], 'TypeError'],
  ['a Buffer', Buffer.from('x'), 'TypeError'],
  ['missing op', {}, 'TypeError'],
  ['op not a string', { op: 7 }, 'TypeError'],
  ['unknown op', { op: 'launchMissiles' }, 'TypeError'],
  ['random length string', { op: 'random', length: '16' }, 'TypeError'],
  ['random length negative', { op: 'random', length: -1 }, 'RangeError'],
  ['random length fractional', { op: 'random', length: 1.5 }, 'RangeError'],
  ['random length huge', { op: 'random', length: 1e9 }, 'RangeError'],
  ['random length NaN', { op: 'random', length: NaN }, 'RangeError'],
  ['encrypt without key', { op: 'encrypt', plaintext: Buffer.alloc(1) }, 'TypeError'],
  ['encrypt key not object', { op: 'encrypt', key: 'k', plaintext: Buffer.alloc(1) }, 'TypeError'],
  [
    'encrypt key id string',
    { op: 'encrypt', key: { id: 'k', cls: 'secret' }, plaintext: Buffer.alloc(1) },
    'TypeError',
  ],
  [
    'encrypt key id empty',
    { op: 'encrypt', key: { id: Buffer.alloc(0), cls: 'secret' }, plaintext: Buffer.alloc(1) },
    'TypeError',
  ],
  [
    'encrypt bad class',
    { op: 'encrypt', key: { id: Buffer.from('k'), cls: 'symmetric' }, plaintext: Buffer.alloc(1) },
    'TypeError',
  ],
  [
    'encrypt token not boolean',
    { op: 'encrypt', key: { ...key, token: 'yes' }, plaintext: Buffer.alloc(1) },
    'TypeError',
  ],
  ['encrypt plaintext string', { op: 'encrypt', key, plaintext: 'secret' }, 'TypeError'],
  ['encrypt plaintext Uint16Array', { op: 'encrypt', key, plaintext: new Uint16Array(4) }, 'TypeError'],
  ['encrypt plaintext too large', { op: 'encrypt', key, plaintext: Buffer.alloc(2 << 20) }, 'RangeError'],
  ['encrypt aad number', { op: 'encrypt', key, plaintext: Buffer.alloc(1), aad: 5 }, 'TypeError'],
  ['encrypt empty iv', { op: 'encrypt', key, plaintext: Buffer.alloc(1), iv: Buffer.alloc(0) }, 'TypeError'],
  ['decrypt without iv', { op: 'decrypt', key, ciphertext: Buffer.alloc(17) }, 'TypeError'],
  [
    'decrypt iv too long',
    { op: 'decrypt', key, iv: Buffer.alloc(200), ciphertext: Buffer.alloc(17) },
    'RangeError',
  ],
  ['rsa bad hash', { op: 'rsaEncrypt', key, hash: 'md5', data: Buffer.alloc(1) }, 'TypeError'],
  ['wrap bad mechanism', { op: 'wrapKey', mechanism: 'DES', wrappingKey: key, key }, 'TypeError'],
  [
    'unwrap bad keyType',
    {
      op: 'unwrapKey',
      mechanism: 'AES_KEY_WRAP',
      unwrappingKey: key,
      wrapped: Buffer.alloc(40),
      keyType: 'des',
      spec,
    },
    'TypeError',
  ],
  [
    'unwrap spec missing',
    {
      op: 'unwrapKey',
      mechanism: 'AES_KEY_WRAP',
      unwrappingKey: key,
      wrapped: Buffer.alloc(40),
      keyType: 'aes',
    },
    'TypeError',
  ],
  ['sign bad mechanism', { op: 'sign', key, mechanism: 'RSA', data: Buffer.alloc(1) }, 'TypeError'],
  [
    'verify without signature',
    { op: 'verify', key, mechanism: 'ECDSA', data: Buffer.alloc(32) },
    'TypeError',
  ],
  ['generateKey bad bits', { op: 'generateKey', keyBits: 100, spec }, 'RangeError'],
  [
    'generateKey spec without usage',
    { op: 'generateKey', keyBits: 256, spec: { id: Buffer.from('x'), label: 'x' } },
    'TypeError',
  ],
  [
    'generateKey usage flag not boolean',
    { op: 'generateKey', keyBits: 256, spec: { ...spec, usage: { encrypt: 1 } } },
    'TypeError',
  ],
  [
    'generateKey label too long',
    { op: 'generateKey', keyBits: 256, spec: { ...spec, label: 'x'.repeat(300) } },
    'RangeError',
  ],
  [
    'generateKeyPair bad kind',
    { op: 'generateKeyPair', kind: 'dsa', publicSpec: spec, privateSpec: spec },
    'TypeError',
  ],
  [
    'generateKeyPair bad curve',
    { op: 'generateKeyPair', kind: 'ec', curve: 'P-384', publicSpec: spec, privateSpec: spec },
    'TypeError',
  ],
  [
    'generateKeyPair small modulus',
    { op: 'generateKeyPair', kind: 'rsa', modulusBits: 512, publicSpec: spec, privateSpec: spec },
    'RangeError',
  ],
  ['getAttributes handle string', { op: 'getAttributes', handle: '1' }, 'TypeError'],
  ['getAttributes handle zero', { op: 'getAttributes', handle: 0 }, 'RangeError'],
  ['destroy handle negative', { op: 'destroy', handle: -4 }, 'RangeError'],
  ['copyObject token missing', { op: 'copyObject', handle: 1 }, 'TypeError'],
  ['setAttributes attrs missing', { op: 'setAttributes', handle: 1 }, 'TypeError'],
  ['find label number', { op: 'find', label: 5 }, 'TypeError'],
];

for (const [name, op, kind] of bad) {
  t.test(name, async (t) => {
    const err = await hsm.batch([{ op: 'random', length: 1 }, op as Op]).catch((e: unknown) => e);
    t.equal((err as Error).constructor.name, kind, String(err));
    t.match(String((err as Error).message), /^op 1: /, 'names the bad item');
  });
}

t.test('batch and submit arguments', async (t) => {
  await t.rejects(hsm.batch('nope' as unknown as Op[]), TypeError);
  await t.rejects(hsm.batch([{ op: 'random', length: 1 }], { timeoutMs: -5 }), RangeError);
  await t.rejects(
    hsm.batch([{ op: 'random', length: 1 }], { timeoutMs: 'soon' as unknown as number }),
    TypeError,
  );
  t.same(await hsm.batch([]), [], 'an empty batch is an empty result');
  t.equal((await hsm.run({ op: 'random', length: 8 })).bytes.length, 8, 'still serving after all that');
});

t.test('open() and initToken() arguments', async (t) => {
  const a = addon();
  t.throws(() => a.open(undefined as never), TypeError);
  t.throws(() => a.open({ modulePath: 5 } as never), TypeError);
  t.throws(
    () => a.open({ modulePath: tok.modulePath, tokenLabel: tok.label, pin: 'string-pin' } as never),
    TypeError,
  );
  t.throws(() => a.open({ modulePath: tok.modulePath, pin: Buffer.from('x') } as never), TypeError);
  t.throws(
    () => a.open({ modulePath: tok.modulePath, tokenLabel: 'x', pin: Buffer.from('x'), sessions: 0 }),
    RangeError,
  );
  const base = { modulePath: tok.modulePath, tokenLabel: 'x', pin: Buffer.from('x') };
  for (const [bad, E] of [
    [0, RangeError],
    [3_600_001, RangeError],
    [1.5, RangeError],
    [Number.NaN, RangeError],
    ['1000', TypeError],
  ] as const) {
    t.throws(
      () => a.open({ ...base, sessionCopyRecheckMs: bad as number }),
      E,
      `sessionCopyRecheckMs ${bad}`,
    );
  }
  t.throws(
    () => a.open({ ...base, sessionObjectCopies: 'yes' as never }),
    TypeError,
    'sessionObjectCopies "yes"',
  );
  t.throws(
    () =>
      a.initToken({
        modulePath: tok.modulePath,
        label: '',
        soPin: Buffer.from('1234'),
        userPin: Buffer.from('1234'),
      }),
    RangeError,
  );
  t.throws(
    () => new (a as unknown as { Hsm: new () => unknown }).Hsm(),
    TypeError,
    'Hsm is made by open() only',
  );
  t.throws(() => a.rvName('5' as never), TypeError);
  t.equal(a.rvName(5), 'CKR_GENERAL_ERROR');
  t.equal(a.rvValue('CKR_DEVICE_ERROR'), 0x30);
  t.equal(a.rvValue('CKR_NOPE'), undefined);
});

t.test('open() failures are errors with codes, and the PIN never shows', async (t) => {
  const wrongPin = Buffer.from('not-the-pin-4321');
  const e1 = await tok.open({ pin: wrongPin }).catch((e: unknown) => e);
  t.equal((e1 as { code: string }).code, 'CKR_PIN_INCORRECT');
  t.notMatch(String((e1 as Error).message), /not-the-pin/);
  t.same(wrongPin, Buffer.alloc(wrongPin.length), 'the PIN Buffer was zeroed by the addon');
  const e2 = await tok.open({ tokenLabel: 'no-such-token' }).catch((e: unknown) => e);
  t.equal((e2 as { code: string }).code, 'HYOKD_TOKEN_NOT_FOUND');
  const e3 = await tok.open({ modulePath: '/nonexistent/libpkcs11.so' }).catch((e: unknown) => e);
  t.equal((e3 as { code: string }).code, 'HYOKD_MODULE_LOAD');
  const e4 = await tok.open({ modulePath: '/usr/lib/x86_64-linux-gnu/libc.so.6' }).catch((e: unknown) => e);
  t.equal((e4 as { code: string }).code, 'HYOKD_MODULE_LOAD', 'a library that is not a PKCS#11 module');
});
