// The sample set every runner decrypts: AES-256-GCM ciphertexts of random 32-byte DEKs
// under one token KEK, each with its own IV and AAD, and the plaintext to check against.
// Children read them from a file of fixed-size records (bench/c_loop.c has the same
// layout): iv(12) aad(16) ciphertext+tag(48) plaintext(32).
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { HsmBackend, KeyRef, Op } from '../../src/hsm/types.js';

export const IV_LEN = 12;
export const AAD_LEN = 16;
export const DEK_LEN = 32;
export const CT_LEN = DEK_LEN + 16;
export const RECORD_LEN = IV_LEN + AAD_LEN + CT_LEN + DEK_LEN;

export interface Sample {
  iv: Buffer;
  aad: Buffer;
  /** Ciphertext followed by the 16-byte tag. */
  ciphertext: Buffer;
  plaintext: Buffer;
}

/** Random DEKs and AADs, ready to be encrypted. */
export function randomPlain(n: number): Array<{ dek: Buffer; aad: Buffer }> {
  return Array.from({ length: n }, () => ({ dek: randomBytes(DEK_LEN), aad: randomBytes(AAD_LEN) }));
}

/**
 * Generates the token AES-256 KEK `kek` on `hsm` and writes `n` samples encrypted under
 * it to `path`; returns them for in-process checks.
 */
export async function makeKekAndSamples(
  hsm: HsmBackend,
  kek: KeyRef,
  n: number,
  path: string,
): Promise<Sample[]> {
  await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id: kek.id, label: 'bench-kek', token: true, usage: { encrypt: true, decrypt: true } },
  });
  const plain = randomPlain(n);
  const enc = await hsm.batch(
    plain.map((p): Op => ({ op: 'encrypt', key: kek, plaintext: Buffer.from(p.dek), aad: p.aad })),
  );
  const samples: Sample[] = enc.map((r, i) => {
    if (!r.ok) throw r.error;
    const v = r as unknown as { iv: Buffer; ciphertext: Buffer };
    return { iv: v.iv, aad: plain[i]!.aad, ciphertext: v.ciphertext, plaintext: plain[i]!.dek };
  });
  writeSamples(path, samples);
  return samples;
}

export function writeSamples(path: string, samples: Sample[]): void {
  const buf = Buffer.alloc(samples.length * RECORD_LEN);
  samples.forEach((s, i) => {
    if (s.iv.length !== IV_LEN || s.aad.length !== AAD_LEN || s.ciphertext.length !== CT_LEN) {
      throw new Error(`sample ${i} does not have the fixed record layout`);
    }
    let o = i * RECORD_LEN;
    o += s.iv.copy(buf, o);
    o += s.aad.copy(buf, o);
    o += s.ciphertext.copy(buf, o);
    s.plaintext.copy(buf, o);
  });
  writeFileSync(path, buf, { mode: 0o600 });
}

export function readSamples(path: string): Sample[] {
  const buf = readFileSync(path);
  if (buf.length === 0 || buf.length % RECORD_LEN !== 0) {
    throw new Error('the sample file is not a whole number of records');
  }
  const out: Sample[] = [];
  for (let o = 0; o < buf.length; o += RECORD_LEN) {
    let p = o;
    const take = (n: number) => {
      const b = Buffer.from(buf.subarray(p, p + n));
      p += n;
      return b;
    };
    out.push({ iv: take(IV_LEN), aad: take(AAD_LEN), ciphertext: take(CT_LEN), plaintext: take(DEK_LEN) });
  }
  return out;
}
