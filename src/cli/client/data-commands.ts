// Data-plane commands (hyok.v1.Hyok): generate-data-key, wrap, unwrap, get-key.
// Batches are in batch-commands.ts. A plaintext DEK is printed (base64) only by
// generate-data-key and unwrap, whose purpose is to return it.

import type { Command } from 'commander';
import { MAX_CALLER_AAD_BYTES, MAX_ENVELOPE_BYTES } from '../../envelope.js';
import { UsageError, type CliIo } from './cli-io.js';
import { print, runAction, subcommand } from './command-kit.js';
import { addConnectionOptions, openConnection, type ConnectionFlags } from './connection.js';
import { dataKeyLines, toJson, type DataKeyInfo } from './format.js';
import { callUnary } from './grpc-client.js';
import { parseAad, parseBase64, parseIntInRange, parseKeyName, readInputFile } from './parse-input.js';
import {
  REWRAP_ALG_HELP,
  openRewrapped,
  rewrapFromFlags,
  rewrappedJson,
  type RewrapFlags,
  type RewrappedDekMessage,
} from './rewrap-input.js';

const DEK_LENGTHS = [16, 24, 32];

interface AadFlags {
  aad?: string;
  aadBase64?: string;
}

function addAadOptions(cmd: Command): Command {
  return cmd
    .option('--aad <text>', 'additional authenticated data, UTF-8 text (must be given again to unwrap)')
    .option('--aad-base64 <b64>', 'additional authenticated data, base64');
}

function addRewrapOptions(cmd: Command): Command {
  return cmd
    .option('--rewrap-to <file>', 'return the DEK encrypted to this public key (PEM/DER SPKI or certificate)')
    .option('--rewrap-alg <alg>', REWRAP_ALG_HELP)
    .option(
      '--rewrap-private-key <file>',
      'open the rewrapped DEK here with this private key and print the DEK (it never crosses the wire in plaintext)',
    );
}

interface DekResult {
  keyName: string;
  keyVersion: number;
  plaintextDek: Buffer;
  rewrapped: RewrappedDekMessage | null;
}

/** The DEK lines of a GenerateDataKey/Unwrap response, opening a rewrap locally if asked. */
function dekOutput(
  res: DekResult,
  rewrap: Awaited<ReturnType<typeof rewrapFromFlags>>,
): { human: string[]; json: Record<string, unknown> } {
  const human: string[] = [];
  const json: Record<string, unknown> = {};
  if (rewrap && res.rewrapped) {
    json.rewrapped = rewrappedJson(res.rewrapped);
    if (rewrap.privateKey) {
      const dek = openRewrapped(rewrap.privateKey, res.rewrapped);
      try {
        human.push(`plaintext-dek: ${dek.toString('base64')}`);
        json.plaintextDek = dek.toString('base64');
      } finally {
        dek.fill(0);
      }
    } else {
      human.push(`rewrap-algorithm: ${res.rewrapped.algorithm}`);
      human.push(`wrapped-dek: ${Buffer.from(res.rewrapped.wrappedDek).toString('base64')}`);
      if (res.rewrapped.ephemeralPublicKey?.length) {
        human.push(
          `ephemeral-public-key: ${Buffer.from(res.rewrapped.ephemeralPublicKey).toString('base64')}`,
        );
      }
    }
  } else if (rewrap) {
    throw new Error('the server returned no rewrapped DEK although one was asked for');
  } else {
    human.push(`plaintext-dek: ${Buffer.from(res.plaintextDek).toString('base64')}`);
    json.plaintextDek = Buffer.from(res.plaintextDek).toString('base64');
  }
  res.plaintextDek?.fill?.(0);
  return { human, json };
}

export function registerDataCommands(program: Command, io: CliIo): void {
  // --- generate-data-key ------------------------------------------------------------------
  const gdk = subcommand(program, 'generate-data-key', io)
    .description('draw a fresh DEK from the HSM: prints it (base64) and its envelope')
    .requiredOption('--key <name>', 'the KEK that seals the DEK')
    .option('--length <bytes>', 'DEK length: 16, 24 or 32', '32');
  addAadOptions(gdk);
  addRewrapOptions(gdk);
  addConnectionOptions(gdk);
  runAction<ConnectionFlags & AadFlags & RewrapFlags & { key: string; length: string }>(
    gdk,
    io,
    async (_a, o) => {
      const keyName = parseKeyName(o.key, '--key');
      const dekLength = parseIntInRange(o.length, '--length', 16, 32);
      if (!DEK_LENGTHS.includes(dekLength))
        throw new UsageError(`--length: must be 16, 24 or 32, got ${dekLength}`);
      const aad = parseAad(o, MAX_CALLER_AAD_BYTES);
      const rewrap = await rewrapFromFlags(o);
      const conn = await openConnection(o, io, 'data');
      try {
        const res = await callUnary<DekResult & { envelope: Buffer }>(
          conn.client,
          'GenerateDataKey',
          { ...conn.base, keyName, dekLength, aad, rewrap: rewrap?.spec ?? null },
          { timeoutMs: conn.timeoutMs },
        );
        const out = dekOutput(res, rewrap);
        print(
          io,
          o.json,
          [
            `key: ${res.keyName}@${res.keyVersion}`,
            `envelope: ${res.envelope.toString('base64')}`,
            ...out.human,
          ],
          {
            keyName: res.keyName,
            keyVersion: res.keyVersion,
            envelope: res.envelope.toString('base64'),
            ...out.json,
          },
        );
      } finally {
        conn.close();
      }
    },
  );

  // --- wrap -----------------------------------------------------------------------------
  const wrap = subcommand(program, 'wrap', io)
    .description('seal a DEK you supply under a KEK; prints the envelope (base64)')
    .requiredOption('--key <name>', 'the KEK that seals the DEK')
    .option('--dek-base64 <b64>', 'the DEK (16, 24 or 32 bytes), base64')
    .option('--dek-file <file>', 'the DEK as raw bytes in a file (keeps it out of the process list)');
  addAadOptions(wrap);
  addConnectionOptions(wrap);
  runAction<ConnectionFlags & AadFlags & { key: string; dekBase64?: string; dekFile?: string }>(
    wrap,
    io,
    async (_a, o) => {
      const keyName = parseKeyName(o.key, '--key');
      if ((o.dekBase64 === undefined) === (o.dekFile === undefined)) {
        throw new UsageError('give the DEK with exactly one of --dek-base64 or --dek-file');
      }
      const flag = o.dekBase64 !== undefined ? '--dek-base64' : '--dek-file';
      const dek =
        o.dekBase64 !== undefined
          ? parseBase64(o.dekBase64, flag, { maxBytes: 64 })
          : await readInputFile(o.dekFile!, flag, 64);
      try {
        if (!DEK_LENGTHS.includes(dek.length)) {
          throw new UsageError(`${flag}: the DEK must be 16, 24 or 32 bytes, got ${dek.length}`);
        }
        const aad = parseAad(o, MAX_CALLER_AAD_BYTES);
        const conn = await openConnection(o, io, 'data');
        try {
          const res = await callUnary<{ envelope: Buffer; keyName: string; keyVersion: number }>(
            conn.client,
            'Wrap',
            { ...conn.base, keyName, plaintextDek: dek, aad },
            { timeoutMs: conn.timeoutMs },
          );
          print(
            io,
            o.json,
            [`key: ${res.keyName}@${res.keyVersion}`, `envelope: ${res.envelope.toString('base64')}`],
            {
              keyName: res.keyName,
              keyVersion: res.keyVersion,
              envelope: res.envelope.toString('base64'),
            },
          );
        } finally {
          conn.close();
        }
      } finally {
        dek.fill(0);
      }
    },
  );

  // --- unwrap ---------------------------------------------------------------------------
  const unwrap = subcommand(program, 'unwrap', io)
    .description('open an envelope: prints the DEK (base64), or the DEK re-wrapped to your public key')
    .option('--envelope-base64 <b64>', 'the envelope, base64')
    .option('--envelope-file <file>', 'the envelope as raw bytes in a file');
  addAadOptions(unwrap);
  addRewrapOptions(unwrap);
  addConnectionOptions(unwrap);
  runAction<ConnectionFlags & AadFlags & RewrapFlags & { envelopeBase64?: string; envelopeFile?: string }>(
    unwrap,
    io,
    async (_a, o) => {
      if ((o.envelopeBase64 === undefined) === (o.envelopeFile === undefined)) {
        throw new UsageError('give the envelope with exactly one of --envelope-base64 or --envelope-file');
      }
      const envelope =
        o.envelopeBase64 !== undefined
          ? parseBase64(o.envelopeBase64, '--envelope-base64', { maxBytes: MAX_ENVELOPE_BYTES })
          : await readInputFile(o.envelopeFile!, '--envelope-file', MAX_ENVELOPE_BYTES);
      if (envelope.length === 0) throw new UsageError('--envelope-file: the file is empty');
      const aad = parseAad(o, MAX_CALLER_AAD_BYTES);
      const rewrap = await rewrapFromFlags(o);
      const conn = await openConnection(o, io, 'data');
      try {
        const res = await callUnary<DekResult>(
          conn.client,
          'Unwrap',
          { ...conn.base, envelope, aad, rewrap: rewrap?.spec ?? null },
          { timeoutMs: conn.timeoutMs },
        );
        const out = dekOutput(res, rewrap);
        print(io, o.json, [`key: ${res.keyName}@${res.keyVersion}`, ...out.human], {
          keyName: res.keyName,
          keyVersion: res.keyVersion,
          ...out.json,
        });
      } finally {
        conn.close();
      }
    },
  );

  // --- get-key --------------------------------------------------------------------------
  const getKey = subcommand(program, 'get-key', io)
    .description("a key's public metadata as the data plane sees it")
    .argument('<name>', 'key name');
  addConnectionOptions(getKey);
  runAction<ConnectionFlags>(getKey, io, async ([name], o) => {
    const keyName = parseKeyName(name!, 'NAME');
    const conn = await openConnection(o, io, 'data');
    try {
      const res = await callUnary<{ key: DataKeyInfo }>(
        conn.client,
        'GetKey',
        { ...conn.base, name: keyName },
        { timeoutMs: conn.timeoutMs },
      );
      print(io, o.json, dataKeyLines(res.key), toJson(res.key));
    } finally {
      conn.close();
    }
  });
}
