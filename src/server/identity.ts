// The caller's identity, from the client certificate the TLS layer verified.
//
// getAuthContext() returns the peer certificate only for an authorized TLS socket.
// Parsing X.509 on every call would cost more than the rest of an Unwrap, so parsed
// identities are cached by certificate fingerprint (bounded; cleared when full). The
// fingerprint comes from the verified handshake, so a cache hit is the same certificate.
import type { PeerCertificate } from 'node:tls';
import { certificateIdentity, type CertificateIdentity } from '../pki/index.js';
import { HyokError } from '../errors.js';
import type { IdentityClass } from './observer.js';

/** What grpc-js `call.getAuthContext()` returns (its type is not exported by the package root). */
export interface AuthContext {
  transportSecurityType?: string;
  sslPeerCertificate?: PeerCertificate;
}

export interface CallerIdentity {
  /** URI SAN, else DNS SAN, else subject CN. */
  identity: string;
  /** SHA-256 of the DER certificate, lowercase hex. */
  fingerprint: string;
  source: CertificateIdentity['source'];
  /** Coarse class for metrics labels. */
  identityClass: IdentityClass;
}

const MAX_CACHE = 1024;
const cache = new Map<string, CallerIdentity>();

/** How a caller is labelled in metrics: never the raw identity. */
export function classifyIdentity(identity: string): IdentityClass {
  return /admin/i.test(identity) ? 'admin' : 'client';
}

/** The caller behind a call, or HyokError UNAUTHENTICATED when there is no verified certificate. */
export function callerIdentity(auth: AuthContext | null | undefined): CallerIdentity {
  const cert = auth?.sslPeerCertificate;
  if (!cert || !cert.raw || typeof cert.fingerprint256 !== 'string') throw new HyokError('UNAUTHENTICATED');
  const key = cert.fingerprint256;
  const hit = cache.get(key);
  if (hit) return hit;
  let parsed: CertificateIdentity;
  try {
    parsed = certificateIdentity(cert.raw);
  } catch (e) {
    throw new HyokError('UNAUTHENTICATED', { cause: e });
  }
  const id: CallerIdentity = Object.freeze({
    identity: parsed.identity,
    fingerprint: parsed.fingerprint256,
    source: parsed.source,
    identityClass: classifyIdentity(parsed.identity),
  });
  if (cache.size >= MAX_CACHE) cache.clear();
  cache.set(key, id);
  return id;
}
