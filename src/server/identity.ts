// The caller's identity, from the client certificate the TLS layer verified.
//
// getAuthContext() returns the peer certificate only for an authorized TLS socket.
// Parsing X.509 on every call would cost more than the rest of an Unwrap, so parsed
// identities are cached by certificate fingerprint (bounded; cleared when full). The
// fingerprint comes from the verified handshake, so a cache hit is the same certificate.
//
// getAuthContext() itself is not cheap either: grpc-js calls socket.getPeerCertificate(),
// which converts the whole certificate to a JS object (fingerprints included) on every
// call; profiled, that was the largest single cost of a unary call. A connection's
// certificate is fixed by its handshake, so callIdentity() remembers the identity per TLS
// socket and only redoes the work when the socket's handshake changed (its Finished
// message differs, e.g. after a TLS 1.2 renegotiation) or it is no longer authorized.
import { TLSSocket, type PeerCertificate } from 'node:tls';
import { certificateIdentity, type CertificateIdentity } from '../pki/index.js';
import { HyokError } from '../errors.js';
import { Memo } from '../memo.js';
import type { AuditIdentity } from '../audit/index.js';

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
  /** The caller as audit records name it, made once per certificate, not per call. */
  audit: AuditIdentity;
}

const cache = new Memo<string, CallerIdentity>(1024);

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
    audit: Object.freeze({ fingerprint: parsed.fingerprint256, san: parsed.identity }),
  });
  return cache.set(key, id);
}

interface SocketEntry {
  finished: Buffer | undefined;
  id: CallerIdentity;
}

const bySocket = new WeakMap<TLSSocket, SocketEntry>();

/** The TLS socket under a grpc-js server call, when its (internal) shape is the known one. */
function tlsSocketOf(call: object): TLSSocket | undefined {
  // ServerUnaryCall/stream → .call (an intercepting call) → .nextCall … → .stream (Http2Stream).
  let c = (call as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && c !== null && typeof c === 'object'; depth++) {
    const stream = (c as { stream?: { session?: { socket?: unknown } } }).stream;
    if (stream !== undefined) {
      const socket = stream?.session?.socket;
      return socket instanceof TLSSocket ? socket : undefined;
    }
    c = (c as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

/**
 * The caller behind a grpc-js server call (same result and errors as
 * `callerIdentity(call.getAuthContext())`), cached per TLS connection.
 */
export function callIdentity(call: { getAuthContext(): AuthContext | null }): CallerIdentity {
  const socket = tlsSocketOf(call);
  if (socket === undefined || !socket.authorized) return callerIdentity(call.getAuthContext());
  const finished = socket.getFinished();
  const hit = bySocket.get(socket);
  if (
    hit !== undefined &&
    finished !== undefined &&
    hit.finished !== undefined &&
    finished.equals(hit.finished)
  ) {
    return hit.id;
  }
  const id = callerIdentity(call.getAuthContext());
  bySocket.set(socket, { finished, id });
  return id;
}
