// Another program on the same SoftHSM2 token, in a process of its own, as an operator's
// tool would be: destroys, or takes CKA_DECRYPT from, the token secret key with a given
// CKA_ID. Usage: node [loader] other-process.ts destroy|disable ID_HEX; the token from
// SOFTHSM2_CONF and HYOKD_TEST_TOKEN_LABEL, the PIN read from the file HYOKD_TEST_PIN_FILE.
import { readFileSync } from 'node:fs';
import { NativeBackend } from '../../src/hsm/native-backend.js';
import { SOFTHSM_MODULE } from '../../src/hsm/softhsm.js';

const [action, idHex] = process.argv.slice(2);
if ((action !== 'destroy' && action !== 'disable') || !idHex) {
  throw new Error('usage: other-process.ts destroy|disable ID_HEX');
}
const h = await NativeBackend.open({
  modulePath: SOFTHSM_MODULE,
  tokenLabel: process.env.HYOKD_TEST_TOKEN_LABEL!,
  pin: readFileSync(process.env.HYOKD_TEST_PIN_FILE!),
  sessions: 1,
});
try {
  const { handles } = await h.run({ op: 'find', cls: 'secret', id: Buffer.from(idHex, 'hex') });
  if (handles.length !== 1) throw new Error(`expected one key with that id, found ${handles.length}`);
  if (action === 'destroy') await h.run({ op: 'destroy', handle: handles[0]! });
  else await h.run({ op: 'setAttributes', handle: handles[0]!, attrs: { usage: { decrypt: false } } });
} finally {
  await h.close();
}
