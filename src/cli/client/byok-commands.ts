// `hyokd byok pack`: offline, for key owners whose own HSM cannot make the import blob.
// Wraps key material to a key-exchange public key (from `hyokd keys import-key`) with
// src/keys packImportBlob (CKM_RSA_AES_KEY_WRAP format behind a small hyokd header). No
// server is contacted. The material never leaves this process except inside the blob,
// and its buffers are zeroed after use.

import { createPrivateKey, createPublicKey } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { packImportBlob } from '../../keys/import-blob.js';
import { UsageError, type CliIo } from './cli-io.js';
import { print, runAction, subcommand } from './command-kit.js';
import { readInputFile } from './parse-input.js';

const MAX_MATERIAL_BYTES = 16 * 1024;
const MAX_PUBLIC_KEY_BYTES = 64 * 1024;

/** Key material: raw bytes (AES), PKCS#8 DER, or a PEM private key converted to PKCS#8 DER. */
function materialBytes(file: Buffer): Buffer {
  if (!file.subarray(0, 11).equals(Buffer.from('-----BEGIN '))) return file;
  try {
    return createPrivateKey(file.toString('latin1')).export({ format: 'der', type: 'pkcs8' });
  } catch {
    // The parser's message could quote the key: say only what is wrong.
    throw new UsageError('--key-file: a PEM file that is not an unencrypted private key');
  }
}

export function registerByokCommands(program: Command, io: CliIo): void {
  const byok = subcommand(program, 'byok', io).description('bring your own key: offline helpers');
  const pack = subcommand(byok, 'pack', io)
    .description('wrap key material to a key-exchange public key, for `hyokd keys import`')
    .requiredOption('--public-key <file>', 'the key-exchange public key PEM saved by `keys import-key`')
    .requiredOption(
      '--key-file <file>',
      'the key material: raw AES key bytes, or a PKCS#8 private key (DER or PEM)',
    )
    .requiredOption('--out <file>', 'where to write the blob')
    .option('--hash <hash>', 'RSA-OAEP hash: sha1 (SoftHSM2 and most HSMs) or sha256', 'sha1')
    .option('--force', 'overwrite --out if it exists')
    .option('--json', 'print JSON for scripts');
  runAction<{
    publicKey: string;
    keyFile: string;
    out: string;
    hash: string;
    force?: boolean;
    json?: boolean;
  }>(pack, io, async (_a, o) => {
    if (o.hash !== 'sha1' && o.hash !== 'sha256') {
      throw new UsageError(`--hash: must be sha1 or sha256, got ${JSON.stringify(o.hash.slice(0, 20))}`);
    }
    const pubFile = await readInputFile(o.publicKey, '--public-key', MAX_PUBLIC_KEY_BYTES);
    let spki: Buffer;
    try {
      const text = pubFile.toString('latin1');
      if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) throw new Error('private');
      const key = text.includes('-----BEGIN ')
        ? createPublicKey(text)
        : createPublicKey({ key: pubFile, format: 'der', type: 'spki' });
      if (key.asymmetricKeyType !== 'rsa') {
        throw new UsageError(`--public-key: the key-exchange key must be RSA, got ${key.asymmetricKeyType}`);
      }
      spki = key.export({ format: 'der', type: 'spki' });
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`--public-key: ${o.publicKey} is not a public key (PEM or SPKI DER)`);
    }
    const raw = await readInputFile(o.keyFile, '--key-file', MAX_MATERIAL_BYTES);
    let material: Buffer | undefined;
    let blob: Buffer;
    try {
      if (raw.length === 0) throw new UsageError('--key-file: the file is empty');
      material = materialBytes(raw);
      blob = packImportBlob(spki, material, { hash: o.hash });
    } finally {
      if (material !== undefined && material !== raw) material.fill(0);
      raw.fill(0);
    }
    try {
      await writeFile(o.out, blob, { mode: 0o600, flag: o.force ? 'w' : 'wx' });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
      if (code === 'EEXIST') throw new UsageError(`--out: ${o.out} exists; remove it or pass --force`);
      throw new UsageError(`--out: cannot write ${o.out} (${code})`);
    }
    const wrapAlg = o.hash === 'sha1' ? 'rsa-aes-kw-sha1' : 'rsa-aes-kw-sha256';
    print(
      io,
      o.json,
      [
        `wrote ${blob.length} bytes to ${o.out}`,
        `import it with: hyokd keys import NAME --kind KIND --import-key-id ID --blob ${o.out} --wrap-alg ${wrapAlg}`,
      ],
      { file: o.out, bytes: blob.length, wrapAlg },
    );
  });
}
