// Issues end-entity certificates (server and client) signed by a CertificateAuthority.
import { isIP } from 'node:net';
import type { CertificateAuthority } from './certificate-authority.js';
import { distinguishedName } from './certificate-authority.js';
import { EC_P256, ECDSA_SHA256, nodeCrypto, x509 } from './crypto-provider.js';
import { certToPem, privateKeyToPem } from './pem.js';
import { randomSerialHex } from './serial-number.js';
import { resolveValidity, type Validity } from './validity.js';

/** A certificate and its private key, both PEM. Keep `keyPem` secret: never log it. */
export interface IssuedCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

/** SPIFFE trust domain of the dev PKI. */
export const DEV_TRUST_DOMAIN = 'hyokd.dev';
/** Identity of the default dev client certificate. */
export const DEV_CLIENT_ID = `spiffe://${DEV_TRUST_DOMAIN}/client`;
/** Identity of the default dev admin certificate. */
export const DEV_ADMIN_ID = `spiffe://${DEV_TRUST_DOMAIN}/admin`;

/** Default end-entity lifetime: two years (dev only; clamped to the CA's own expiry). */
export const LEAF_VALIDITY_DAYS = 730;

export interface ServerCertOptions extends Validity {
  /** Subject CN. Default "localhost". */
  commonName?: string;
  /** DNS SANs. Default ["localhost"]. */
  dnsNames?: string[];
  /** IP SANs. Default ["127.0.0.1", "::1"]. */
  ipAddresses?: string[];
}

export interface ClientCertOptions extends Validity {
  /** URI SAN, normally a SPIFFE ID such as "spiffe://hyokd.dev/client". */
  uri?: string;
  /** DNS SANs (optional). */
  dnsNames?: string[];
  /** Subject CN. Default: the URI, else the first DNS name. Required when neither is given. */
  commonName?: string;
}

interface LeafSpec extends Validity {
  commonName: string;
  sans: x509.JsonGeneralName[];
  usage: x509.ExtendedKeyUsage;
}

/** Issues a TLS server certificate (serverAuth) for localhost by default. */
export async function issueServerCert(
  ca: CertificateAuthority,
  opts: ServerCertOptions = {},
): Promise<IssuedCertificate> {
  const dnsNames = opts.dnsNames ?? ['localhost'];
  const ipAddresses = opts.ipAddresses ?? ['127.0.0.1', '::1'];
  for (const ip of ipAddresses) {
    if (isIP(ip) === 0) throw new TypeError(`ipAddresses: "${ip}" is not an IPv4 or IPv6 address`);
  }
  dnsNames.forEach(checkDnsName);
  return issueLeaf(ca, {
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    commonName: opts.commonName ?? dnsNames[0] ?? 'hyokd server',
    sans: [
      ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
      ...ipAddresses.map((value) => ({ type: 'ip' as const, value })),
    ],
    usage: x509.ExtendedKeyUsage.serverAuth,
  });
}

/** Issues a TLS client certificate (clientAuth) carrying the given identity. */
export async function issueClientCert(
  ca: CertificateAuthority,
  opts: ClientCertOptions,
): Promise<IssuedCertificate> {
  const dnsNames = opts.dnsNames ?? [];
  if (opts.uri !== undefined) checkUri(opts.uri);
  dnsNames.forEach(checkDnsName);
  const commonName = opts.commonName ?? opts.uri ?? dnsNames[0];
  if (commonName === undefined) {
    throw new TypeError('client certificate needs an identity: set uri, dnsNames or commonName');
  }
  const sans: x509.JsonGeneralName[] = [
    ...(opts.uri !== undefined ? [{ type: 'url' as const, value: opts.uri }] : []),
    ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
  ];
  return issueLeaf(ca, {
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    commonName,
    sans,
    usage: x509.ExtendedKeyUsage.clientAuth,
  });
}

/** Issues the dev admin client certificate (URI SAN spiffe://hyokd.dev/admin). */
export async function issueAdminCert(
  ca: CertificateAuthority,
  opts: Validity = {},
): Promise<IssuedCertificate> {
  return issueClientCert(ca, { ...opts, uri: DEV_ADMIN_ID, commonName: 'hyokd admin' });
}

async function issueLeaf(ca: CertificateAuthority, spec: LeafSpec): Promise<IssuedCertificate> {
  const { notBefore, notAfter: requested } = resolveValidity(spec, LEAF_VALIDITY_DAYS);
  // A default lifetime never outlives the CA; an explicit one is taken as asked (tests).
  const notAfter = spec.notAfter === undefined && requested > ca.cert.notAfter ? ca.cert.notAfter : requested;
  const keys = (await nodeCrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([spec.usage], false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
  ];
  if (spec.sans.length > 0) {
    // RFC 5280 4.2.1.6: critical only when the subject is empty, which ours never is.
    extensions.push(new x509.SubjectAlternativeNameExtension(spec.sans, false));
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: distinguishedName(spec.commonName),
    issuer: ca.cert.subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: ECDSA_SHA256,
    extensions,
  });
  return { certPem: certToPem(cert), keyPem: await privateKeyToPem(keys.privateKey) };
}

function checkDnsName(name: string): void {
  if (
    !/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(
      name,
    )
  ) {
    throw new TypeError(`dnsNames: "${name}" is not a valid DNS name`);
  }
}

function checkUri(uri: string): void {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new TypeError(
      `uri: "${uri}" is not an absolute URI (expected e.g. spiffe://${DEV_TRUST_DOMAIN}/client)`,
    );
  }
  if (u.protocol === 'spiffe:' && (u.hostname === '' || u.search !== '' || u.hash !== '')) {
    throw new TypeError(`uri: "${uri}" is not a valid SPIFFE ID (spiffe://<trust-domain>/<path>)`);
  }
}
