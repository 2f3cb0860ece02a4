/**
 * Dev PKI: certificates for the embedded default (`npm start`) and for tests.
 * EC P-256 / ECDSA-SHA256 throughout, made with @peculiar/x509 on Node's WebCrypto.
 *
 * CAs
 *   createCa(opts?: CreateCaOptions): Promise<CertificateAuthority>
 *     New self-signed root (10 years by default). Every call is an unrelated trust root,
 *     so a second call is the "foreign CA" for negative tests.
 *     opts: { commonName?, organization?, notBefore?, notAfter? }
 *   loadCa(certPem: string, keyPem: string): Promise<CertificateAuthority>
 *
 * Leaves (all return { certPem, keyPem }; default lifetime 2 years, capped at the CA's)
 *   issueServerCert(ca, opts?: ServerCertOptions)
 *     serverAuth; SAN DNS localhost + IP 127.0.0.1 + ::1 unless overridden
 *     opts: { commonName?, dnsNames?, ipAddresses?, notBefore?, notAfter? }
 *   issueClientCert(ca, opts: ClientCertOptions)
 *     clientAuth; opts: { uri? (URI SAN, e.g. DEV_CLIENT_ID), dnsNames?, commonName?,
 *     notBefore?, notAfter? }. Pass a past notAfter to get an EXPIRED certificate.
 *   issueAdminCert(ca, opts?: Validity)   clientAuth with URI SAN DEV_ADMIN_ID
 *
 * On disk
 *   ensureDevPki(dir: string): Promise<DevPki>
 *     Creates on first run, reuses after. See devPkiPaths(dir) for the layout:
 *     ca.pem ca.key server.pem server.key client.pem client.key client.bundle.pem
 *     admin.pem admin.key admin.bundle.pem (keys and bundles 0600, dir 0700).
 *   formatBundle / parseBundle: key + own cert + CA cert in one PEM file.
 *
 * Identity
 *   certificateIdentity(cert: string | Uint8Array): CertificateIdentity
 *     { identity, source: 'uri'|'dns'|'cn', fingerprint256 (hex), subject, serialNumber,
 *       notBefore, notAfter } from PEM or DER (tls.PeerCertificate.raw). No verification.
 */
export { parseBundle, formatBundle, type ClientBundle } from './bundle.js';
export {
  CA_VALIDITY_DAYS,
  createCa,
  loadCa,
  type CertificateAuthority,
  type CreateCaOptions,
} from './certificate-authority.js';
export {
  certificateIdentity,
  type CertificateIdentity,
  type IdentitySource,
} from './certificate-identity.js';
export { devPkiPaths, ensureDevPki, type DevPki, type DevPkiPaths } from './dev-pki.js';
export {
  DEV_ADMIN_ID,
  DEV_CLIENT_ID,
  DEV_TRUST_DOMAIN,
  LEAF_VALIDITY_DAYS,
  issueAdminCert,
  issueClientCert,
  issueServerCert,
  type ClientCertOptions,
  type IssuedCertificate,
  type ServerCertOptions,
} from './issue-certificate.js';
export type { Validity } from './validity.js';
