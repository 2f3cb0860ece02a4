// A client "bundle": one PEM file holding a client's private key, its certificate and
// the CA certificate that verifies the server. One file is easier to hand to a CLI or
// a load-test harness than three. It contains a private key: mode 0600.
import { x509 } from './crypto-provider.js';

export interface ClientBundle {
  readonly keyPem: string;
  readonly certPem: string;
  readonly caPem: string;
}

export function formatBundle(b: ClientBundle): string {
  return [b.keyPem, b.certPem, b.caPem].map((p) => p.trimEnd() + '\n').join('');
}

/**
 * Splits a bundle into its parts: the PRIVATE KEY block, then the first CERTIFICATE
 * (the client's own), then the remaining CERTIFICATE blocks (trust roots). Throws, naming
 * what is missing, when a part is absent; never echoes the key.
 */
export function parseBundle(pem: string): ClientBundle {
  const blocks = x509.PemConverter.decodeWithHeaders(pem);
  const keys = blocks.filter((b) => b.type === 'PRIVATE KEY');
  const certs = blocks.filter((b) => b.type === 'CERTIFICATE');
  if (keys.length !== 1) {
    throw new TypeError(`client bundle: expected exactly one "PRIVATE KEY" block, found ${keys.length}`);
  }
  if (certs.length < 2) {
    throw new TypeError(
      `client bundle: expected the client certificate followed by the CA certificate, found ${certs.length} certificate(s)`,
    );
  }
  const [own, ...roots] = certs;
  return {
    keyPem: x509.PemConverter.encode(keys[0]!.rawData, 'PRIVATE KEY') + '\n',
    certPem: x509.PemConverter.encode(own!.rawData, 'CERTIFICATE') + '\n',
    caPem: roots.map((c) => x509.PemConverter.encode(c.rawData, 'CERTIFICATE') + '\n').join(''),
  };
}
