// PEM encoding of keys and certificates produced through WebCrypto.
import { nodeCrypto, x509 } from './crypto-provider.js';

/** PKCS#8 "PRIVATE KEY" PEM of a WebCrypto private key (must be extractable). */
export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  const der = await nodeCrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY') + '\n';
}

/** Imports a PKCS#8 PEM as an ECDSA P-256 signing key. */
export async function privateKeyFromPem(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return nodeCrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign']);
}

/** Certificate PEM with a trailing newline (what openssl and Node's tls expect to concatenate). */
export function certToPem(cert: x509.X509Certificate): string {
  return cert.toString('pem') + '\n';
}
