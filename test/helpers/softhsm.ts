// A fresh SoftHSM2 token in a temporary directory, one per test file (tap runs each
// file in its own process, and SoftHSM2 reads its config once per process).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureSoftHsmToken, SOFTHSM_MODULE } from '../../src/hsm/softhsm.js';
import { NativeBackend, type NativeBackendOptions } from '../../src/hsm/native-backend.js';

export interface TestToken {
  dir: string;
  label: string;
  modulePath: string;
  /** The file that holds the user PIN (for another process on the token). */
  pinFile: string;
  /** A fresh copy of the PIN each call: the addon zeroes what it is given. */
  pin(): Buffer;
  open(opts?: Partial<NativeBackendOptions>): Promise<NativeBackend>;
  cleanup(): void;
}

export async function createTestToken(label = 'hyokd-test'): Promise<TestToken> {
  const dir = mkdtempSync(join(tmpdir(), 'hyokd-softhsm-'));
  const tok = await ensureSoftHsmToken({ dir, secretsDir: join(dir, 'secrets'), label });
  const pin = () => readFileSync(tok.pinFile);
  return {
    dir,
    label,
    modulePath: SOFTHSM_MODULE,
    pinFile: tok.pinFile,
    pin,
    open: (opts = {}) =>
      NativeBackend.open({ modulePath: SOFTHSM_MODULE, tokenLabel: label, pin: pin(), ...opts }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
