// hyok.v1 messages for the load generator: encoded ONCE with protobufjs from the .proto
// and framed for gRPC (1-byte compressed flag + 4-byte big-endian length + message), so
// the hot loop only writes bytes it already has. The reading side does not decode whole
// messages: it walks the protobuf wire format just far enough to find per-item status
// codes (batches, streams); full decoding is kept for the sampled DEK check.
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { repoRoot } from '../lib/paths.js';

export interface HyokTypes {
  UnwrapRequest: protobuf.Type;
  UnwrapResponse: protobuf.Type;
  BatchUnwrapRequest: protobuf.Type;
  BatchUnwrapResponse: protobuf.Type;
  UnwrapStreamRequest: protobuf.Type;
  UnwrapStreamResponse: protobuf.Type;
  EchoRequest: protobuf.Type;
  EchoResponse: protobuf.Type;
}

let types: HyokTypes | undefined;

/** The message types of proto/hyok/v1/hyok.proto (loaded once per thread). */
export function hyokTypes(): HyokTypes {
  if (types) return types;
  const root = protobuf.loadSync(join(repoRoot(), 'proto', 'hyok', 'v1', 'hyok.proto'));
  const t = (name: string) => root.lookupType(`hyok.v1.${name}`);
  types = {
    UnwrapRequest: t('UnwrapRequest'),
    UnwrapResponse: t('UnwrapResponse'),
    BatchUnwrapRequest: t('BatchUnwrapRequest'),
    BatchUnwrapResponse: t('BatchUnwrapResponse'),
    UnwrapStreamRequest: t('UnwrapStreamRequest'),
    UnwrapStreamResponse: t('UnwrapStreamResponse'),
    EchoRequest: t('EchoRequest'),
    EchoResponse: t('EchoResponse'),
  };
  return types;
}

/** A gRPC length-prefixed message (uncompressed). */
export function grpcFrame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

export function encode(type: protobuf.Type, value: Record<string, unknown>): Uint8Array {
  const problem = type.verify(value);
  if (problem) throw new Error(`bad ${type.name}: ${problem}`);
  return type.encode(type.create(value)).finish();
}

export function decode<T>(type: protobuf.Type, bytes: Uint8Array): T {
  return type.toObject(type.decode(bytes), { defaults: true }) as T;
}

// --- minimal wire walking -------------------------------------------------------------

/** Reads a varint at `pos`; returns [value, next position] (values here fit in 2^53). */
function varint(b: Uint8Array, pos: number): [number, number] {
  let v = 0;
  let mul = 1;
  for (;;) {
    if (pos >= b.length) throw new Error('truncated varint');
    const byte = b[pos++];
    v += (byte & 0x7f) * mul;
    if (byte < 0x80) return [v, pos];
    mul *= 128;
  }
}

/**
 * Calls `each(field, start, end)` for every length-delimited field of the message in
 * b[from, to); varints are passed as (field, value, -1). Other wire types are skipped.
 */
function walk(
  b: Uint8Array,
  from: number,
  to: number,
  each: (field: number, a: number, end: number) => void,
): void {
  let p = from;
  while (p < to) {
    const [tag, q] = varint(b, p);
    p = q;
    const field = Math.floor(tag / 8);
    switch (tag & 7) {
      case 0: {
        const [v, r] = varint(b, p);
        p = r;
        each(field, v, -1);
        break;
      }
      case 1:
        p += 8;
        break;
      case 2: {
        const [len, r] = varint(b, p);
        each(field, r, r + len);
        p = r + len;
        break;
      }
      case 5:
        p += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${tag & 7}`);
    }
  }
  if (p !== to) throw new Error('message overruns its length');
}

/** The `code` (field 1) of an ItemStatus in b[from, to). */
function itemStatusCode(b: Uint8Array, from: number, to: number): number {
  let code = 0;
  walk(b, from, to, (f, v, end) => {
    if (f === 1 && end === -1) code = v;
  });
  return code;
}

/** Counts OK and failed items of a BatchUnwrapResponse (status = field 1 of each result). */
export function batchItemCodes(msg: Uint8Array): { ok: number; failed: number } {
  let ok = 0;
  let failed = 0;
  walk(msg, 0, msg.length, (f, a, end) => {
    if (f !== 1 || end === -1) return;
    let code = 0;
    walk(msg, a, end, (g, s, e) => {
      if (g === 1 && e !== -1) code = itemStatusCode(msg, s, e);
    });
    if (code === 0) ok++;
    else failed++;
  });
  return { ok, failed };
}

/** The item status code of an UnwrapStreamResponse (field 2); 0 when absent. */
export function streamItemCode(msg: Uint8Array): number {
  let code = 0;
  walk(msg, 0, msg.length, (f, a, end) => {
    if (f === 2 && end !== -1) code = itemStatusCode(msg, a, end);
  });
  return code;
}

/**
 * Splits gRPC length-prefixed messages out of a byte stream that arrives in arbitrary
 * chunks. Returns whole messages; keeps the remainder for the next chunk.
 */
export class FrameReader {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Buffer[] = [];
    let p = 0;
    while (this.#buf.length - p >= 5) {
      const len = this.#buf.readUInt32BE(p + 1);
      if (this.#buf.length - p - 5 < len) break;
      out.push(this.#buf.subarray(p + 5, p + 5 + len));
      p += 5 + len;
    }
    this.#buf = p === this.#buf.length ? Buffer.alloc(0) : this.#buf.subarray(p);
    return out;
  }
}
