// The embedded default: what `hyokd serve` creates under HYOKD_HOME on a fresh checkout
// so a newcomer has a working, mutually authenticated daemon in one command. Each part
// is created only when the configuration still points at its default location, and is
// reused on later runs.
//
//   <home>/softhsm/       SoftHSM2 token directory and config (token label "hyokd")
//   <home>/secrets/       random user and SO PINs (0600), token serial
//   <home>/hsm.pin        symlink to secrets/hsm-user.pin (config's default pinFile)
//   <home>/pki/           dev CA, server, client and admin certificates (ensureDevPki)
//   <home>/policy.yaml    client may wrapKey/unwrapKey/get on `demo`; admin everything
//   <home>/hyokd.db       SQLite metadata store (opened by serve)
//   <home>/audit/         audit log (opened by serve)
//   demo KEK              AES-256 key `demo`, created through KeyService
//   security domain       bound on first run (KeyService.initDomain) so BackupKey and
//                         RestoreKey work out of the box for keys created backupable
import { existsSync, lstatSync, symlinkSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Config } from '../config/index.js';
import { DEFAULT_TOKEN_LABEL } from '../config/index.js';
import { HyokError } from '../errors.js';
import { ensureSoftHsmToken, SOFTHSM_MODULE } from '../hsm/softhsm.js';
import type { KeyService } from '../keys/index.js';
import type { MetadataStore } from '../store/types.js';
import { DEV_ADMIN_ID, DEV_CLIENT_ID, ensureDevPki, type DevPki } from '../pki/index.js';

export const DEMO_KEY = 'demo';

export const DEFAULT_POLICY_YAML = `# hyokd authorization policy (embedded default). Default deny; see the README.
version: 1
roles:
  crypto-user: [wrapKey, unwrapKey, get]
  administrator: ["*"]
bindings:
  - identity: "${DEV_CLIENT_ID}"
    roles: [crypto-user]
    keys: ["${DEMO_KEY}"]
    description: the dev client certificate (pki/client.bundle.pem) may use the demo key
  - identity: "${DEV_ADMIN_ID}"
    roles: [administrator]
    description: the dev admin certificate (pki/admin.bundle.pem) may do everything
`;

/** Whether the HSM section still describes the embedded SoftHSM2 token. */
export function usesEmbeddedHsm(config: Config): boolean {
  return (
    config.hsm.module === SOFTHSM_MODULE &&
    config.hsm.tokenLabel === DEFAULT_TOKEN_LABEL &&
    config.hsm.tokenSerial === null &&
    config.hsm.pinFile === join(config.home, 'hsm.pin')
  );
}

/** Whether the TLS files are the dev PKI's default locations. */
export function usesDevPki(config: Config): boolean {
  const pki = join(config.home, 'pki');
  const t = config.server.tls;
  return (
    t.cert === join(pki, 'server.pem') &&
    t.key === join(pki, 'server.key') &&
    t.clientCa === join(pki, 'ca.pem')
  );
}

export interface EmbeddedSetup {
  /** What this run created (for the first-run message). */
  created: string[];
  pki: DevPki | null;
}

/**
 * Creates what is missing before the HSM is opened: the SoftHSM2 token (and the PIN file
 * config expects), the dev PKI, the default policy file.
 */
export async function prepareEmbeddedHome(config: Config): Promise<EmbeddedSetup> {
  const created: string[] = [];
  if (usesEmbeddedHsm(config)) {
    const secrets = join(config.home, 'secrets');
    const existed = existsSync(join(secrets, 'hsm-token.serial'));
    const tok = await ensureSoftHsmToken({
      dir: join(config.home, 'softhsm'),
      secretsDir: secrets,
      label: DEFAULT_TOKEN_LABEL,
    });
    if (!existed) created.push(`SoftHSM2 token "${tok.label}" (serial ${tok.serialNumber})`);
    const pinFile = config.hsm.pinFile!;
    if (!isPresent(pinFile)) {
      // A relative link, so the data folder can move as a whole.
      symlinkSync(relative(config.home, tok.pinFile), pinFile);
    }
  }
  let pki: DevPki | null = null;
  if (usesDevPki(config)) {
    pki = await ensureDevPki(join(config.home, 'pki'));
    if (pki.written.length > 0) created.push(`dev PKI in pki/ (${pki.written.join(', ')})`);
  }
  if (config.policy.file === join(config.home, 'policy.yaml') && !existsSync(config.policy.file)) {
    await writeFile(config.policy.file, DEFAULT_POLICY_YAML, { mode: 0o644, flag: 'wx' });
    created.push('policy.yaml (client: wrapKey/unwrapKey/get on demo; admin: everything)');
  }
  return { created, pki };
}

function isPresent(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Creates the demo KEK when it does not exist yet. Returns true when it was created. */
export async function ensureDemoKey(keys: KeyService): Promise<boolean> {
  try {
    await keys.describe(DEMO_KEY);
    return false;
  } catch (e) {
    if (!(e instanceof HyokError) || e.code !== 'KEY_NOT_FOUND') throw e;
  }
  await keys.createKey({ name: DEMO_KEY, kind: 'aes-256', tags: { purpose: 'demo' } });
  return true;
}

/**
 * Binds the store to a new security domain when it is bound to none. Returns the new
 * domain's id, or null when one was already bound (nothing changes).
 */
export async function ensureSecurityDomain(keys: KeyService, store: MetadataStore): Promise<string | null> {
  if (await store.getDomain()) return null;
  return (await keys.initDomain()).domainId;
}
