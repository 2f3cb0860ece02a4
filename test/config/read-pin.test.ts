import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ConfigError, loadConfig, readPin } from '../../src/config/index.js';

const PIN = 'S3cr3t-PIN-9931';

function pinFile(t: Test, content: string | Buffer, mode = 0o600): string {
  const p = join(t.testdir(), 'pin');
  writeFileSync(p, content);
  chmodSync(p, mode);
  return p;
}

const fromFile = (pinFilePath: string) => ({ hsm: { pinFile: pinFilePath, pinEnv: null } });
const fromEnv = (name: string) => ({ hsm: { pinFile: null, pinEnv: name } });

function failure(t: Test, fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    t.type(e, ConfigError);
    const msg = (e as Error).message;
    t.notMatch(msg, PIN, 'the PIN is not in the message');
    return msg;
  }
  t.fail('expected a ConfigError');
  return '';
}

t.test('reads a PIN file and drops the trailing newline', async (t) => {
  t.equal(readPin(fromFile(pinFile(t, `${PIN}\n`))).toString(), PIN);
  t.equal(readPin(fromFile(pinFile(t, `${PIN}\r\n`))).toString(), PIN, 'CRLF too');
  t.equal(readPin(fromFile(pinFile(t, PIN))).toString(), PIN, 'no newline at all');
  t.equal(
    readPin(fromFile(pinFile(t, ' a b \n'))).toString(),
    ' a b ',
    'other whitespace is part of the PIN',
  );
  t.ok(Buffer.isBuffer(readPin(fromFile(pinFile(t, PIN)))));
  t.equal(readPin(fromFile(pinFile(t, PIN, 0o400))).toString(), PIN, '0400 is fine too');
});

t.test('refuses a PIN file readable or writable by group or others', async (t) => {
  for (const mode of [0o644, 0o640, 0o604, 0o620]) {
    const p = pinFile(t, PIN, mode);
    const msg = failure(t, () => readPin(fromFile(p)));
    t.match(msg, `hsm.pinFile: PIN file ${p} is accessible by group or others (mode 0${mode.toString(8)})`);
    t.match(msg, `chmod 600 ${p}`, 'says how to fix it');
  }
});

t.test('missing, empty or non-file PIN sources are clear errors', async (t) => {
  const dir = t.testdir();
  t.match(
    failure(t, () => readPin(fromFile(join(dir, 'absent')))),
    /PIN file .*absent does not exist.*mode 0600/,
  );
  t.match(
    failure(t, () => readPin(fromFile(pinFile(t, '\n')))),
    /PIN file .* is empty/,
  );
  const sub = join(dir, 'adir');
  mkdirSync(sub, { mode: 0o700 });
  t.match(
    failure(t, () => readPin(fromFile(sub))),
    /is not a regular file/,
  );
  t.match(
    failure(t, () => readPin({ hsm: { pinFile: null, pinEnv: null } })),
    /no PIN source/,
  );
});

t.test('reads the PIN from the named environment variable', async (t) => {
  t.equal(readPin(fromEnv('HSM_PIN'), { HSM_PIN: PIN }).toString(), PIN);
  t.match(
    failure(t, () => readPin(fromEnv('HSM_PIN'), {})),
    /environment variable HSM_PIN is not set or is empty/,
  );
  t.match(
    failure(t, () => readPin(fromEnv('HSM_PIN'), { HSM_PIN: '' })),
    /HSM_PIN is not set or is empty/,
  );
});

t.test('works with a loaded config (relative pinFile under home)', async (t) => {
  const cwd = t.testdir({ var: { 'hsm.pin': `${PIN}\n` } });
  chmodSync(join(cwd, 'var', 'hsm.pin'), 0o600);
  const c = loadConfig({ env: {}, cwd });
  t.equal(readPin(c).toString(), PIN);
  const viaEnv = loadConfig({ env: { HYOKD_HSM_PIN_ENV: 'MY_PIN' }, cwd });
  t.equal(readPin(viaEnv, { MY_PIN: PIN }).toString(), PIN);
});
