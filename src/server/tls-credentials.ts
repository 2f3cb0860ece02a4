// Mutual TLS server credentials whose certificate, key and client-CA bundle can be
// replaced at run time (SIGHUP) without touching established connections.
//
// grpc-js (>= 1.14) exposes `experimental.createCertificateProviderServerCredentials`:
// the server watches the provider and calls `tls.Server.setSecureContext()` on every
// update, which only affects handshakes that start afterwards; connections (and the
// calls on them) that already exist keep their old context. Client certificates are
// always requested and required, verified against the configured CA bundle only (never
// the public roots).
import { createSecureContext } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { experimental, type ServerCredentials } from '@grpc/grpc-js';

type CaListener = experimental.CaCertificateUpdateListener;
type IdListener = experimental.IdentityCertificateUpdateListener;

export interface TlsFiles {
  cert: string;
  key: string;
  clientCa: string;
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  clientCa: Buffer;
}

/** Reads and checks the three PEM files: the key must match the certificate, the CA must parse. */
export async function readTlsMaterial(files: TlsFiles): Promise<TlsMaterial> {
  const [cert, key, clientCa] = await Promise.all([
    readFile(files.cert),
    readFile(files.key),
    readFile(files.clientCa),
  ]);
  checkTlsMaterial({ cert, key, clientCa });
  return { cert, key, clientCa };
}

/** Throws (with a message naming the part, never the content) when the material is unusable. */
export function checkTlsMaterial(m: TlsMaterial): void {
  try {
    createSecureContext({ cert: m.cert, key: m.key, ca: m.clientCa });
  } catch (e) {
    throw new Error(`TLS material rejected: ${(e as Error).message}`);
  }
  if (!m.clientCa.includes('-----BEGIN CERTIFICATE-----')) {
    throw new Error('TLS material rejected: the client CA bundle holds no certificate');
  }
}

/**
 * A certificate provider for both the identity (cert + key) and the trust bundle.
 * `update()` swaps all three at once; listeners are the grpc-js server's watchers.
 */
export class ReloadableTls implements experimental.CertificateProvider {
  #material: TlsMaterial;
  readonly #caListeners = new Set<CaListener>();
  readonly #idListeners = new Set<IdListener>();
  readonly #files: TlsFiles | null;
  #generation = 1;
  readonly credentials: ServerCredentials;

  constructor(material: TlsMaterial, files: TlsFiles | null = null) {
    checkTlsMaterial(material);
    this.#material = material;
    this.#files = files;
    this.credentials = experimental.createCertificateProviderServerCredentials(this, this, true);
  }

  static async fromFiles(files: TlsFiles): Promise<ReloadableTls> {
    return new ReloadableTls(await readTlsMaterial(files), files);
  }

  get generation(): number {
    return this.#generation;
  }

  /** Installs new material for new handshakes. Throws (keeping the old) when it is unusable. */
  update(material: TlsMaterial): void {
    checkTlsMaterial(material);
    this.#material = material;
    this.#generation += 1;
    for (const l of this.#caListeners) l({ caCertificate: material.clientCa });
    for (const l of this.#idListeners) l({ certificate: material.cert, privateKey: material.key });
  }

  /** Re-reads the files this object was made from (SIGHUP). On error the old material stays. */
  async reload(): Promise<{ ok: true; generation: number } | { ok: false; error: string }> {
    if (this.#files === null) return { ok: false, error: 'TLS material was not loaded from files' };
    try {
      this.update(await readTlsMaterial(this.#files));
      return { ok: true, generation: this.#generation };
    } catch (e) {
      return { ok: false, error: (e as Error).message };
    }
  }

  addCaCertificateListener(listener: CaListener): void {
    this.#caListeners.add(listener);
    // Asynchronously: grpc-js registers its watcher only after adding the listener.
    process.nextTick(() => {
      if (this.#caListeners.has(listener)) listener({ caCertificate: this.#material.clientCa });
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdListener): void {
    this.#idListeners.add(listener);
    process.nextTick(() => {
      if (this.#idListeners.has(listener)) {
        listener({ certificate: this.#material.cert, privateKey: this.#material.key });
      }
    });
  }

  removeIdentityCertificateListener(listener: IdListener): void {
    this.#idListeners.delete(listener);
  }
}
