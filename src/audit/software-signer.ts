// A software audit signer, for tests of the chain only: the production signer keeps its
// key in the HSM (hsm-signer.ts).
//
// node:crypto can only sign a message it hashes itself, but `AuditSigner.sign` receives
// a digest (as CKM_ECDSA does), so this signer does the ECDSA step on P-256 with bigint
// arithmetic: k is drawn from the CSPRNG, points in Jacobian coordinates. It is neither
// constant time nor fast; that is acceptable only because it never guards a real key.

import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { keyIdForSpki, type AuditSigner } from './signer.js';

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n;
const GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n;

type Jac = [bigint, bigint, bigint];

const mod = (a: bigint, m: bigint): bigint => {
  const r = a % m;
  return r < 0n ? r + m : r;
};

function powMod(base: bigint, exp: bigint, m: bigint): bigint {
  let result = 1n;
  let b = mod(base, m);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return result;
}

/** Inverse modulo a prime (Fermat). */
const inv = (a: bigint, m: bigint): bigint => powMod(a, m - 2n, m);

function dbl([x, y, z]: Jac): Jac {
  if (z === 0n || y === 0n) return [0n, 1n, 0n];
  const delta = (z * z) % P;
  const gamma = (y * y) % P;
  const beta = (x * gamma) % P;
  const alpha = (3n * mod(x - delta, P) * (x + delta)) % P;
  const x3 = mod(alpha * alpha - 8n * beta, P);
  const z3 = mod((y + z) * (y + z) - gamma - delta, P);
  const y3 = mod(alpha * (4n * beta - x3) - 8n * gamma * gamma, P);
  return [x3, y3, z3];
}

function add(a: Jac, b: Jac): Jac {
  if (a[2] === 0n) return b;
  if (b[2] === 0n) return a;
  const [x1, y1, z1] = a;
  const [x2, y2, z2] = b;
  const z1z1 = (z1 * z1) % P;
  const z2z2 = (z2 * z2) % P;
  const u1 = (x1 * z2z2) % P;
  const u2 = (x2 * z1z1) % P;
  const s1 = (y1 * z2 * z2z2) % P;
  const s2 = (y2 * z1 * z1z1) % P;
  if (u1 === u2) return s1 === s2 ? dbl(a) : [0n, 1n, 0n];
  const h = mod(u2 - u1, P);
  const r = mod(s2 - s1, P);
  const h2 = (h * h) % P;
  const h3 = (h2 * h) % P;
  const x3 = mod(r * r - h3 - 2n * u1 * h2, P);
  const y3 = mod(r * (u1 * h2 - x3) - s1 * h3, P);
  const z3 = (h * z1 * z2) % P;
  return [x3, y3, z3];
}

function mulG(k: bigint): bigint {
  let acc: Jac = [0n, 1n, 0n];
  let base: Jac = [GX, GY, 1n];
  let e = k;
  while (e > 0n) {
    if (e & 1n) acc = add(acc, base);
    base = dbl(base);
    e >>= 1n;
  }
  const zi = inv(acc[2], P);
  return (acc[0] * zi * zi) % P; // affine x
}

const toBig = (b: Buffer): bigint => BigInt('0x' + (b.length ? b.toString('hex') : '0'));
const to32 = (v: bigint): Buffer => Buffer.from(v.toString(16).padStart(64, '0'), 'hex');

export class SoftwareAuditSigner implements AuditSigner {
  readonly keyId: string;
  readonly #spki: Buffer;
  readonly #d: bigint;

  /** A fresh P-256 key pair, or the given private key. */
  constructor(privateKey?: KeyObject) {
    const priv = privateKey ?? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const jwk = priv.export({ format: 'jwk' });
    if (jwk.crv !== 'P-256' || typeof jwk.d !== 'string')
      throw new Error('software signer needs a P-256 private key');
    this.#d = toBig(Buffer.from(jwk.d, 'base64url'));
    this.#spki = Buffer.from(createPublicKey(priv).export({ type: 'spki', format: 'der' }));
    this.keyId = keyIdForSpki(this.#spki);
  }

  publicKeySpkiDer(): Buffer {
    return Buffer.from(this.#spki);
  }

  async sign(digest32: Buffer): Promise<Buffer> {
    if (digest32.length !== 32) throw new Error('audit signer expects a 32-byte digest');
    const z = toBig(digest32);
    for (;;) {
      const k = toBig(randomBytes(32));
      if (k === 0n || k >= N) continue;
      const r = mod(mulG(k), N);
      if (r === 0n) continue;
      const s = mod(inv(k, N) * (z + r * this.#d), N);
      if (s === 0n) continue;
      return Buffer.concat([to32(r), to32(s)]);
    }
  }
}
