// SoftHSM2 provisioning for the embedded default and the tests: a private token
// directory with its own config file, and a token initialized through PKCS#11 itself
// (C_InitToken / C_InitPIN in the addon), so no PIN ever appears in a command line.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addon } from './native.js';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/**
 * Writes `<dir>/softhsm2.conf` pointing at `<dir>/tokens` and sets SOFTHSM2_CONF, which
 * SoftHSM2 reads at C_Initialize: call this before the module is first opened in the
 * process.
 */
export function useSoftHsmDir(dir: string): string {
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens, { recursive: true, mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  const text =
    `directories.tokendir = ${tokens}\n` +
    'objectstore.backend = file\n' +
    'log.level = ERROR\n' +
    'slots.removable = false\n';
  if (!existsSync(conf) || readFileSync(conf, 'utf8') !== text) writeFileSync(conf, text, { mode: 0o600 });
  process.env.SOFTHSM2_CONF = conf;
  return conf;
}

/** A random PIN of printable characters (SoftHSM2 takes 4–255 bytes). */
export function randomPin(): Buffer {
  return Buffer.from(randomBytes(24).toString('base64url'));
}

export interface ProvisionedToken {
  label: string;
  serialNumber: string;
  /** Path of the file that holds the user PIN (mode 0600). */
  pinFile: string;
}

/**
 * Creates the token `label` in `dir` (a SoftHSM2 directory from useSoftHsmDir) unless a
 * PIN file says it exists already. The user and SO PINs are random and written to
 * `<secretsDir>/hsm-user.pin` and `hsm-so.pin`, mode 0600.
 */
export async function ensureSoftHsmToken(opts: {
  dir: string;
  secretsDir: string;
  label: string;
  modulePath?: string;
}): Promise<ProvisionedToken> {
  useSoftHsmDir(opts.dir);
  mkdirSync(opts.secretsDir, { recursive: true, mode: 0o700 });
  chmodSync(opts.secretsDir, 0o700);
  const pinFile = join(opts.secretsDir, 'hsm-user.pin');
  const soFile = join(opts.secretsDir, 'hsm-so.pin');
  const serialFile = join(opts.secretsDir, 'hsm-token.serial');
  if (existsSync(pinFile) && existsSync(serialFile)) {
    return { label: opts.label, serialNumber: readFileSync(serialFile, 'utf8').trim(), pinFile };
  }
  const user = randomPin();
  const so = randomPin();
  // The addon zeroes the Buffers it is given; write the files from copies first.
  writeFileSync(pinFile, user, { mode: 0o600 });
  writeFileSync(soFile, so, { mode: 0o600 });
  const { serialNumber } = await addon().initToken({
    modulePath: opts.modulePath ?? SOFTHSM_MODULE,
    label: opts.label,
    soPin: so,
    userPin: user,
  });
  writeFileSync(serialFile, serialNumber + '\n', { mode: 0o600 });
  return { label: opts.label, serialNumber, pinFile };
}
