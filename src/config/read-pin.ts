// Reads the token user PIN named by the configuration. The PIN lives in a file that
// only the daemon's user can read, or in an environment variable; never in the YAML,
// never on the command line, never in a message.
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import type { HsmConfig } from './config.js';
import { ConfigError, unreadableBecause } from './config-error.js';

/**
 * Returns the PIN as a Buffer the caller owns: pass it to the HSM login, then
 * `pin.fill(0)`. Trailing CR/LF characters of a PIN file are dropped. Throws
 * ConfigError when the source is missing or empty, or when the PIN file is readable
 * or writable by group or others.
 */
export function readPin(
  config: { readonly hsm: Pick<HsmConfig, 'pinFile' | 'pinEnv'> },
  env: Readonly<Record<string, string | undefined>> = process.env,
): Buffer {
  const { pinFile, pinEnv } = config.hsm;
  if (pinEnv !== null) {
    const value = env[pinEnv];
    if (value === undefined || value === '') {
      throw new ConfigError([
        `hsm.pinEnv: environment variable ${pinEnv} is not set or is empty. Export it with the token user PIN before starting hyokd.`,
      ]);
    }
    return Buffer.from(value, 'utf8');
  }
  if (pinFile === null) {
    throw new ConfigError([
      'hsm: no PIN source. Set hsm.pinFile (a 0600 file) or hsm.pinEnv (a variable name).',
    ]);
  }
  let fd: number;
  try {
    fd = openSync(pinFile, 'r');
  } catch (e) {
    throw new ConfigError([
      `hsm.pinFile: PIN file ${pinFile} ${unreadableBecause(e)}. Create it with the token user PIN and mode 0600, or set hsm.pinEnv instead.`,
    ]);
  }
  let raw: Buffer;
  try {
    // Check the file we actually opened, not the path (no race with a swapped file).
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw new ConfigError([
        `hsm.pinFile: ${pinFile} is not a regular file. Point it at the file holding the PIN.`,
      ]);
    }
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new ConfigError([
        `hsm.pinFile: PIN file ${pinFile} is accessible by group or others (mode ${mode}). Restrict it: chmod 600 ${pinFile}`,
      ]);
    }
    raw = readFileSync(fd);
  } finally {
    closeSync(fd);
  }
  let end = raw.length;
  while (end > 0 && (raw[end - 1] === 0x0a || raw[end - 1] === 0x0d)) end--;
  if (end === 0) {
    raw.fill(0);
    throw new ConfigError([`hsm.pinFile: PIN file ${pinFile} is empty. Write the token user PIN into it.`]);
  }
  const pin = Buffer.from(raw.subarray(0, end));
  raw.fill(0);
  return pin;
}
