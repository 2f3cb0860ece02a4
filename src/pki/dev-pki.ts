// The on-disk dev PKI: created on first run under the data folder, reused afterwards.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatBundle } from './bundle.js';
import { createCa, loadCa, type CertificateAuthority } from './certificate-authority.js';
import {
  DEV_CLIENT_ID,
  issueAdminCert,
  issueClientCert,
  issueServerCert,
  type IssuedCertificate,
} from './issue-certificate.js';

export interface DevPkiPaths {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly clientBundle: string;
  readonly adminCert: string;
  readonly adminKey: string;
  readonly adminBundle: string;
}

export interface DevPki {
  readonly paths: DevPkiPaths;
  /** File names (relative to dir) written by this call; empty when everything was reused. */
  readonly written: readonly string[];
}

/** File layout of a dev PKI directory. */
export function devPkiPaths(dir: string): DevPkiPaths {
  return Object.freeze({
    dir,
    caCert: join(dir, 'ca.pem'),
    caKey: join(dir, 'ca.key'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client.key'),
    clientBundle: join(dir, 'client.bundle.pem'),
    adminCert: join(dir, 'admin.pem'),
    adminKey: join(dir, 'admin.key'),
    adminBundle: join(dir, 'admin.bundle.pem'),
  });
}

/** A leaf is renewed when it has less than this left to live. */
const RENEW_BEFORE_MS = 7 * 24 * 60 * 60 * 1000;
const LOCK_STALE_MS = 30_000;
const LOCK_WAIT_MS = 20_000;

/**
 * Makes sure `dir` holds a usable dev PKI and returns its paths.
 *
 * First run: creates the directory (0700), a CA, and server, client and admin
 * certificates. Later runs reuse everything that is still good and reissue only a
 * leaf that is missing, expiring within 7 days, not issued by this CA, or whose key
 * does not match. Private keys and bundles are written 0600, certificates 0644, each
 * atomically (temp file + rename). Concurrent callers on the same directory serialise
 * on a lock file. A CA with only one of its two files present, or an expired CA, is an
 * error: the caller must remove the directory to start over (client certificates
 * handed out under the old CA stop working).
 */
export async function ensureDevPki(dir: string): Promise<DevPki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const paths = devPkiPaths(dir);
  const release = await lock(join(dir, '.lock'));
  try {
    const written: string[] = [];
    const ca = await ensureCa(paths, written);
    const caX509 = new X509Certificate(ca.certPem);
    const leaves: Array<{
      cert: string;
      key: string;
      bundle?: string;
      issue: () => Promise<IssuedCertificate>;
    }> = [
      { cert: paths.serverCert, key: paths.serverKey, issue: () => issueServerCert(ca) },
      {
        cert: paths.clientCert,
        key: paths.clientKey,
        bundle: paths.clientBundle,
        issue: () => issueClientCert(ca, { uri: DEV_CLIENT_ID, commonName: 'hyokd dev client' }),
      },
      {
        cert: paths.adminCert,
        key: paths.adminKey,
        bundle: paths.adminBundle,
        issue: () => issueAdminCert(ca),
      },
    ];
    for (const leaf of leaves) {
      let pair = await readUsableLeaf(leaf.cert, leaf.key, caX509);
      if (pair === null) {
        pair = await leaf.issue();
        await writeAtomic(leaf.key, pair.keyPem, 0o600, written);
        await writeAtomic(leaf.cert, pair.certPem, 0o644, written);
      } else {
        await tightenKeyMode(leaf.key);
      }
      if (leaf.bundle !== undefined) {
        const want = formatBundle({ keyPem: pair.keyPem, certPem: pair.certPem, caPem: ca.certPem });
        const have = await readFile(leaf.bundle, 'utf8').catch(() => null);
        if (have !== want) await writeAtomic(leaf.bundle, want, 0o600, written);
        else await tightenKeyMode(leaf.bundle);
      }
    }
    return Object.freeze({ paths, written: Object.freeze(written) });
  } finally {
    await release();
  }
}

async function ensureCa(paths: DevPkiPaths, written: string[]): Promise<CertificateAuthority> {
  const certPem = await readFile(paths.caCert, 'utf8').catch(missingOnly);
  const keyPem = await readFile(paths.caKey, 'utf8').catch(missingOnly);
  if (certPem === null && keyPem === null) {
    const ca = await createCa();
    await writeAtomic(paths.caKey, ca.keyPem, 0o600, written);
    await writeAtomic(paths.caCert, ca.certPem, 0o644, written);
    return ca;
  }
  const startOver = `remove the directory ${paths.dir} to create a new dev PKI`;
  if (certPem === null || keyPem === null) {
    const missing = certPem === null ? paths.caCert : paths.caKey;
    throw new Error(`dev PKI is incomplete: ${missing} is missing; ${startOver}`);
  }
  let ca: CertificateAuthority;
  try {
    ca = await loadCa(certPem, keyPem);
  } catch (e) {
    throw new Error(`dev PKI CA in ${paths.dir} is unusable: ${(e as Error).message}; ${startOver}`);
  }
  if (ca.cert.notAfter.getTime() <= Date.now()) {
    throw new Error(`dev PKI CA expired on ${ca.cert.notAfter.toISOString()}; ${startOver}`);
  }
  await tightenKeyMode(paths.caKey);
  return ca;
}

/** Returns the leaf's PEMs when they are present and still good, else null. */
async function readUsableLeaf(
  certPath: string,
  keyPath: string,
  ca: X509Certificate,
): Promise<IssuedCertificate | null> {
  const certPem = await readFile(certPath, 'utf8').catch(missingOnly);
  const keyPem = await readFile(keyPath, 'utf8').catch(missingOnly);
  if (certPem === null || keyPem === null) return null;
  try {
    const cert = new X509Certificate(certPem);
    const key = createPrivateKey(keyPem);
    const ok =
      cert.checkIssued(ca) &&
      cert.verify(ca.publicKey) &&
      cert.checkPrivateKey(key) &&
      Date.parse(cert.validTo) - Date.now() > RENEW_BEFORE_MS;
    return ok ? { certPem, keyPem } : null;
  } catch {
    // Unparseable cert or key: reissue rather than fail, the CA is what matters.
    return null;
  }
}

function missingOnly(e: NodeJS.ErrnoException): null {
  if (e.code === 'ENOENT') return null;
  throw e;
}

async function tightenKeyMode(path: string): Promise<void> {
  const st = await stat(path);
  if ((st.mode & 0o077) !== 0) await chmod(path, 0o600);
}

async function writeAtomic(path: string, data: string, mode: number, written: string[]): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data, { mode, flag: 'w' });
  await chmod(tmp, mode); // the umask may have removed bits; never added any.
  await rename(tmp, path);
  written.push(path.slice(path.lastIndexOf('/') + 1));
}

/** Exclusive lock by O_EXCL file creation; a lock older than LOCK_STALE_MS is taken over. */
async function lock(path: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fh = await open(path, 'wx', 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => rm(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const st = await stat(path).catch(() => null);
    if (st !== null && Date.now() - st.mtimeMs > LOCK_STALE_MS) {
      await rm(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(`dev PKI: timed out waiting for lock ${path}; remove it if no other hyokd is running`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
