// The caller identity hyokd derives from a verified client certificate, and the
// certificate fingerprint the audit log records next to it.
import { createHash } from 'node:crypto';
import { x509 } from './crypto-provider.js';

export type IdentitySource = 'uri' | 'dns' | 'cn';

export interface CertificateIdentity {
  /** The identity: first URI SAN, else first DNS SAN, else subject CN. */
  readonly identity: string;
  /** Which certificate field the identity came from. */
  readonly source: IdentitySource;
  /** SHA-256 of the DER certificate, lowercase hex without separators (64 chars). */
  readonly fingerprint256: string;
  /** Subject DN as text (RFC 4514 style, for logs). */
  readonly subject: string;
  /** Serial number, lowercase hex. */
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/**
 * Reads the identity of a certificate given as PEM text or DER bytes (for example
 * `tls.PeerCertificate.raw`). It does NOT verify anything: call it only on a
 * certificate the TLS layer has already verified. Throws when the input is not a
 * certificate or carries no usable identity.
 */
export function certificateIdentity(cert: string | Uint8Array): CertificateIdentity {
  let der: Buffer;
  if (typeof cert === 'string') {
    if (!x509.PemConverter.isPem(cert))
      throw new TypeError('certificate: expected a PEM "CERTIFICATE" block');
    const blocks = x509.PemConverter.decodeWithHeaders(cert);
    const first = blocks.find((b) => b.type === 'CERTIFICATE');
    if (first === undefined) throw new TypeError('certificate: expected a PEM "CERTIFICATE" block');
    der = Buffer.from(first.rawData);
  } else {
    der = Buffer.from(cert.buffer, cert.byteOffset, cert.byteLength);
  }
  let parsed: x509.X509Certificate;
  try {
    parsed = new x509.X509Certificate(new Uint8Array(der));
  } catch (e) {
    throw new TypeError(`certificate: not a DER X.509 certificate (${(e as Error).message})`);
  }

  const names = parsed
    .getExtensions(x509.SubjectAlternativeNameExtension)
    .flatMap((ext) => ext.names.items.map((n) => n.toJSON()));
  const uri = names.find((n) => n.type === 'url')?.value;
  const dns = names.find((n) => n.type === 'dns')?.value;
  const cn = parsed.subjectName.getField('CN')[0];

  let identity: string;
  let source: IdentitySource;
  if (uri !== undefined && uri !== '') {
    identity = uri;
    source = 'uri';
  } else if (dns !== undefined && dns !== '') {
    identity = dns;
    source = 'dns';
  } else if (cn !== undefined && cn !== '') {
    identity = cn;
    source = 'cn';
  } else {
    throw new TypeError('certificate has no identity: no URI SAN, DNS SAN or subject CN');
  }
  return Object.freeze({
    identity,
    source,
    fingerprint256: createHash('sha256').update(der).digest('hex'),
    subject: parsed.subject,
    serialNumber: parsed.serialNumber.toLowerCase(),
    notBefore: parsed.notBefore,
    notAfter: parsed.notAfter,
  });
}
