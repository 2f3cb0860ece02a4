// A certificate authority for development and tests: self-signed EC P-256 root that
// signs server and client certificates directly (no intermediates).
import { EC_P256, ECDSA_SHA256, nodeCrypto, x509 } from './crypto-provider.js';
import { certToPem, privateKeyFromPem, privateKeyToPem } from './pem.js';
import { randomSerialHex } from './serial-number.js';
import { resolveValidity, type Validity } from './validity.js';

/** A CA that can issue certificates. Keep `keyPem` secret: never log it. */
export interface CertificateAuthority {
  /** Subject distinguished name, e.g. "CN=hyokd dev CA, O=hyokd". */
  readonly subject: string;
  readonly certPem: string;
  readonly keyPem: string;
  /** @internal parsed certificate and signing key, used by the issuers. */
  readonly cert: x509.X509Certificate;
  /** @internal */
  readonly signingKey: CryptoKey;
}

export interface CreateCaOptions extends Validity {
  /** Subject common name. Default "hyokd dev CA". */
  commonName?: string;
  /** Subject organization. Default "hyokd". */
  organization?: string;
}

/** Default CA lifetime: ten years. */
export const CA_VALIDITY_DAYS = 3650;

/** Characters that would need escaping in an RFC 4514 name; refused to keep names simple. */
const DN_SPECIAL = /[,+="\\<>;#\n\r]/;

export function distinguishedName(commonName: string, organization?: string): string {
  for (const [what, v] of [
    ['commonName', commonName],
    ['organization', organization],
  ] as const) {
    if (v !== undefined && (v.length === 0 || DN_SPECIAL.test(v))) {
      throw new TypeError(`${what} must be non-empty and must not contain any of , + = " \\ < > ; #`);
    }
  }
  return organization === undefined ? `CN=${commonName}` : `CN=${commonName}, O=${organization}`;
}

/**
 * Creates a new, independent CA. Each call yields an unrelated trust root, so a second
 * call is exactly the "foreign CA" that tests need.
 */
export async function createCa(opts: CreateCaOptions = {}): Promise<CertificateAuthority> {
  const { notBefore, notAfter } = resolveValidity(opts, CA_VALIDITY_DAYS);
  const subject = distinguishedName(opts.commonName ?? 'hyokd dev CA', opts.organization ?? 'hyokd');
  const keys = (await nodeCrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: subject,
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    subject,
    certPem: certToPem(cert),
    keyPem: await privateKeyToPem(keys.privateKey),
    cert,
    signingKey: keys.privateKey,
  };
}

/**
 * Loads a CA from its PEM certificate and PKCS#8 key. Throws when the key does not
 * belong to the certificate or the certificate is not a CA.
 */
export async function loadCa(certPem: string, keyPem: string): Promise<CertificateAuthority> {
  const cert = new x509.X509Certificate(certPem);
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) {
    throw new Error(`certificate "${cert.subject}" is not a CA (basicConstraints cA is not set)`);
  }
  let signingKey: CryptoKey;
  try {
    signingKey = await privateKeyFromPem(keyPem);
  } catch {
    // The key itself is secret: say what is wrong without echoing any of it.
    throw new Error('CA private key is not a PKCS#8 EC P-256 key');
  }
  const probe = new Uint8Array([0x68, 0x79, 0x6f, 0x6b]);
  const sig = await nodeCrypto.subtle.sign(ECDSA_SHA256, signingKey, probe);
  const pub = await cert.publicKey.export(EC_P256, ['verify'], nodeCrypto);
  if (!(await nodeCrypto.subtle.verify(ECDSA_SHA256, pub, sig, probe))) {
    throw new Error(`CA private key does not match certificate "${cert.subject}"`);
  }
  return { subject: cert.subject, certPem: certToPem(cert), keyPem, cert, signingKey };
}
