// batch-wrap and batch-unwrap: JSON lines in (a file or stdin), one result line out per
// input line, in order. Input is checked completely before the first call, so a typo on
// line 900 does not leave 899 items done.
//
//   batch-wrap input:    {"key": "payments", "dekBase64": "…", "aad": "text" | "aadBase64": "…"}
//   batch-unwrap input:  {"envelopeBase64": "…", "aad": "text" | "aadBase64": "…"}
//   output (--json):     {"index": 0, "ok": true, "keyName": "…", "keyVersion": 1, "envelopeBase64" | "dekBase64": "…"}
//                        {"index": 1, "ok": false, "code": 9, "reason": "KEY_DISABLED", "message": "…", "metadata": {}}
//
// Items go to the server in calls of --batch-size items. Exit code 1 when any item failed.

import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { Command } from 'commander';
import { status as grpcStatus } from '@grpc/grpc-js';
import { MAX_CALLER_AAD_BYTES, MAX_ENVELOPE_BYTES } from '../../envelope.js';
import { EXIT_FAILED, UsageError, type CliIo } from './cli-io.js';
import { runAction, subcommand } from './command-kit.js';
import { addConnectionOptions, openConnection, type ConnectionFlags } from './connection.js';
import { callUnary } from './grpc-client.js';
import { parseAad, parseBase64, parseIntInRange, parseKeyName } from './parse-input.js';

const MAX_LINE_CHARS = 64 * 1024;
const MAX_ITEMS = 100_000;
const DEFAULT_BATCH = 100;
const MAX_BATCH = 10_000;

interface BatchFlags extends ConnectionFlags {
  input: string;
  batchSize?: string;
}

/** Non-empty lines with their 1-based line numbers, bounded in length and count. */
async function readJsonLines(
  input: string,
  io: CliIo,
): Promise<{ line: number; value: Record<string, unknown> }[]> {
  let stream: Readable;
  if (input === '-') stream = io.stdin();
  else {
    stream = createReadStream(input);
  }
  const out: { line: number; value: Record<string, unknown> }[] = [];
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  let n = 0;
  try {
    for await (const raw of rl) {
      n++;
      if (raw.length > MAX_LINE_CHARS)
        throw new UsageError(`--input line ${n}: longer than ${MAX_LINE_CHARS} characters`);
      const text = raw.trim();
      if (text === '') continue;
      if (out.length >= MAX_ITEMS) throw new UsageError(`--input: more than ${MAX_ITEMS} items`);
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        throw new UsageError(`--input line ${n}: not valid JSON`);
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new UsageError(`--input line ${n}: expected a JSON object`);
      }
      out.push({ line: n, value: value as Record<string, unknown> });
    }
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--input: cannot read ${input} (${(e as NodeJS.ErrnoException).code ?? 'EIO'})`);
  } finally {
    rl.close();
    if (input !== '-') stream.destroy();
  }
  if (out.length === 0) throw new UsageError('--input: no items');
  return out;
}

function checkFields(v: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k))
      throw new UsageError(`${where}: unknown field "${k.slice(0, 40)}"; allowed: ${allowed.join(', ')}`);
  }
  for (const k of allowed) {
    if (v[k] !== undefined && typeof v[k] !== 'string')
      throw new UsageError(`${where}: "${k}" must be a string`);
  }
}

function itemAad(v: Record<string, unknown>, where: string): Buffer {
  try {
    return parseAad(
      { aad: v.aad as string | undefined, aadBase64: v.aadBase64 as string | undefined },
      MAX_CALLER_AAD_BYTES,
    );
  } catch (e) {
    throw new UsageError(
      `${where}: ${(e as Error).message.replace(/^--aad-base64/, 'aadBase64').replace(/^--aad/, 'aad')}`,
    );
  }
}

interface ItemStatus {
  code: number;
  reason: string;
  message: string;
  metadata: Record<string, string>;
}

/** An item the server answered with neither an error nor a result. */
const NO_RESULT: ItemStatus = {
  code: grpcStatus.INTERNAL,
  reason: '',
  message: 'the server returned no result for this item',
  metadata: {},
};

function failureJson(index: number, s: ItemStatus): Record<string, unknown> {
  return {
    index,
    ok: false,
    code: s.code,
    status: grpcStatus[s.code] ?? `STATUS_${s.code}`,
    reason: s.reason,
    message: s.message,
    metadata: s.metadata ?? {},
  };
}

function printItem(io: CliIo, json: boolean | undefined, item: Record<string, unknown>, human: string): void {
  io.out((json ? JSON.stringify(item) : human) + '\n');
}

function batchSize(o: BatchFlags): number {
  return o.batchSize === undefined
    ? DEFAULT_BATCH
    : parseIntInRange(o.batchSize, '--batch-size', 1, MAX_BATCH);
}

function addBatchOptions(cmd: Command): Command {
  return cmd
    .option('--input <file>', 'JSON lines input; - for stdin', '-')
    .option('--batch-size <n>', `items per call (default ${DEFAULT_BATCH}, at most ${MAX_BATCH})`);
}

export function registerBatchCommands(program: Command, io: CliIo): void {
  const bw = subcommand(program, 'batch-wrap', io).description(
    'wrap many DEKs: JSON lines {"key","dekBase64","aad"|"aadBase64"} in, one result line out per item',
  );
  addBatchOptions(bw);
  addConnectionOptions(bw);
  runAction<BatchFlags>(bw, io, async (_a, o) => {
    const size = batchSize(o);
    const lines = await readJsonLines(o.input, io);
    const items = lines.map(({ line, value }) => {
      const where = `--input line ${line}`;
      checkFields(value, ['key', 'dekBase64', 'aad', 'aadBase64'], where);
      if (typeof value.key !== 'string') throw new UsageError(`${where}: "key" is required`);
      if (typeof value.dekBase64 !== 'string') throw new UsageError(`${where}: "dekBase64" is required`);
      const keyName = parseKeyName(value.key, `${where} "key"`);
      const plaintextDek = parseBase64(value.dekBase64, `${where} "dekBase64"`, { maxBytes: 64 });
      if (![16, 24, 32].includes(plaintextDek.length)) {
        throw new UsageError(
          `${where}: "dekBase64" must decode to 16, 24 or 32 bytes, got ${plaintextDek.length}`,
        );
      }
      return { keyName, plaintextDek, aad: itemAad(value, where) };
    });
    try {
      const failed = await sendInBatches<(typeof items)[number], WrapResult>(
        o,
        io,
        'BatchWrap',
        items,
        size,
        (index, r) => {
          const envelopeBase64 = r.envelope.toString('base64');
          printItem(
            io,
            o.json,
            { index, ok: true, keyName: r.keyName, keyVersion: r.keyVersion, envelopeBase64 },
            `${index} ok ${r.keyName}@${r.keyVersion} ${envelopeBase64}`,
          );
        },
        (chunk) => {
          for (const it of chunk) it.plaintextDek.fill(0);
        },
      );
      return failed > 0 ? EXIT_FAILED : undefined;
    } finally {
      for (const it of items) it.plaintextDek.fill(0);
    }
  });

  const bu = subcommand(program, 'batch-unwrap', io).description(
    'unwrap many envelopes: JSON lines {"envelopeBase64","aad"|"aadBase64"} in, one result line (with the DEK, base64) out per item',
  );
  addBatchOptions(bu);
  addConnectionOptions(bu);
  runAction<BatchFlags>(bu, io, async (_a, o) => {
    const size = batchSize(o);
    const lines = await readJsonLines(o.input, io);
    const items = lines.map(({ line, value }) => {
      const where = `--input line ${line}`;
      checkFields(value, ['envelopeBase64', 'aad', 'aadBase64'], where);
      if (typeof value.envelopeBase64 !== 'string')
        throw new UsageError(`${where}: "envelopeBase64" is required`);
      const envelope = parseBase64(value.envelopeBase64, `${where} "envelopeBase64"`, {
        maxBytes: MAX_ENVELOPE_BYTES,
      });
      return { envelope, aad: itemAad(value, where), rewrap: null };
    });
    const failed = await sendInBatches<(typeof items)[number], UnwrapResult>(
      o,
      io,
      'BatchUnwrap',
      items,
      size,
      (index, r) => {
        const dekBase64 = r.plaintextDek.toString('base64');
        r.plaintextDek.fill(0);
        printItem(
          io,
          o.json,
          { index, ok: true, keyName: r.keyName, keyVersion: r.keyVersion, dekBase64 },
          `${index} ok ${r.keyName}@${r.keyVersion} ${dekBase64}`,
        );
      },
    );
    return failed > 0 ? EXIT_FAILED : undefined;
  });
}

interface WrapResult {
  envelope: Buffer;
  keyName: string;
  keyVersion: number;
}
interface UnwrapResult {
  plaintextDek: Buffer;
  keyName: string;
  keyVersion: number;
}

/**
 * Sends `items` in calls of `size`, prints one line per item (failures here, successes
 * through `ok`) and returns how many items failed. `afterCall` runs once per call, e.g.
 * to zero the DEKs that call carried.
 */
async function sendInBatches<I, R>(
  o: BatchFlags,
  io: CliIo,
  method: 'BatchWrap' | 'BatchUnwrap',
  items: I[],
  size: number,
  ok: (index: number, result: R) => void,
  afterCall?: (chunk: I[]) => void,
): Promise<number> {
  const conn = await openConnection(o, io, 'data');
  let failed = 0;
  try {
    for (let start = 0; start < items.length; start += size) {
      const chunk = items.slice(start, start + size);
      let res: { results: { status: ItemStatus | null; result: R | null }[] };
      try {
        res = await callUnary(
          conn.client,
          method,
          { ...conn.base, items: chunk },
          { timeoutMs: conn.timeoutMs },
        );
      } finally {
        afterCall?.(chunk);
      }
      if (res.results.length !== chunk.length) {
        throw new Error(`the server returned ${res.results.length} results for ${chunk.length} items`);
      }
      res.results.forEach((r, i) => {
        const index = start + i;
        if (r.status && r.status.code !== 0) {
          failed++;
          printItem(
            io,
            o.json,
            failureJson(index, r.status),
            `${index} FAILED ${r.status.reason || grpcStatus[r.status.code]}: ${r.status.message}`,
          );
        } else if (r.result) {
          ok(index, r.result);
        } else {
          failed++;
          printItem(io, o.json, failureJson(index, NO_RESULT), `${index} FAILED ${NO_RESULT.message}`);
        }
      });
    }
  } finally {
    conn.close();
  }
  return failed;
}
