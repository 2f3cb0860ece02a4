// The requests the benchmarks send, made once before any measurement: real envelopes from
// the server under test (GenerateDataKey on the demo KEK, each with its own AAD), the
// plaintext DEKs they must unwrap to, and the pre-encoded gRPC frames for each RPC.
// Also the check of captured responses against those DEKs.
import { randomBytes } from 'node:crypto';
import { credentials, Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { hyokGrpcObject } from '../../src/server/proto.js';
import { decode, encode, grpcFrame, hyokTypes } from './proto.js';
import type { Capture, CallKind, Target } from './types.js';

export const KEY_NAME = 'demo';
const AAD_LEN = 16;
/** Echo payload: sized like an envelope, as hyok.proto asks. */
const ECHO_PAYLOAD_LEN = 100;

export interface Workload {
  envelopes: Buffer[];
  aads: Buffer[];
  deks: Buffer[];
  /** Typical envelope size in bytes (for the report). */
  envelopeBytes: number;
}

type Unary = (
  req: unknown,
  md: Metadata,
  opts: unknown,
  cb: (e: ServiceError | null, v: unknown) => void,
) => void;

/** Makes `count` envelopes on the server with GenerateDataKey (setup only; grpc-js is fine here). */
export async function makeWorkload(target: Target, count: number): Promise<Workload> {
  const Ctor = (hyokGrpcObject() as unknown as { hyok: { v1: { Hyok: new (...a: unknown[]) => Client } } })
    .hyok.v1.Hyok;
  const client = new Ctor(
    `127.0.0.1:${target.port}`,
    credentials.createSsl(Buffer.from(target.caPem), Buffer.from(target.keyPem), Buffer.from(target.certPem)),
    // The dev server certificate names localhost too; an IP address as the TLS server name
    // is against RFC 6066 and makes Node print a deprecation warning.
    { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' },
  ) as Client & { GenerateDataKey: Unary };
  try {
    const one = (aad: Buffer) =>
      new Promise<{ plaintextDek: Buffer; envelope: Buffer }>((resolve, reject) => {
        client.GenerateDataKey(
          { keyName: KEY_NAME, dekLength: 32, aad },
          new Metadata(),
          { deadline: Date.now() + 30_000 },
          (e, v) => (e ? reject(e) : resolve(v as { plaintextDek: Buffer; envelope: Buffer })),
        );
      });
    const aads = Array.from({ length: count }, () => randomBytes(AAD_LEN));
    const out: Array<{ plaintextDek: Buffer; envelope: Buffer }> = [];
    for (let i = 0; i < count; i += 32) {
      out.push(...(await Promise.all(aads.slice(i, i + 32).map(one))));
    }
    return {
      envelopes: out.map((o) => Buffer.from(o.envelope)),
      aads,
      deks: out.map((o) => Buffer.from(o.plaintextDek)),
      envelopeBytes: out[0]?.envelope.length ?? 0,
    };
  } finally {
    client.close();
  }
}

export const PATHS: Record<CallKind, string> = {
  echo: '/hyok.v1.Hyok/Echo',
  unary: '/hyok.v1.Hyok/Unwrap',
  batch: '/hyok.v1.Hyok/BatchUnwrap',
  stream: '/hyok.v1.Hyok/UnwrapStream',
};

/**
 * Pre-encoded frames. unary/stream: one per envelope (stream correlation id = envelope
 * index); batch: `count / batchSize` frames of `batchSize` consecutive envelopes, so frame
 * f item j is envelope (f * batchSize + j) % count; echo: a few random payloads.
 */
export function framesFor(kind: CallKind, w: Workload, batchSize: number): Uint8Array[] {
  const t = hyokTypes();
  const n = w.envelopes.length;
  const unwrap = (i: number) => ({ requestId: `bench-${i}`, envelope: w.envelopes[i], aad: w.aads[i] });
  switch (kind) {
    case 'echo':
      return Array.from({ length: 16 }, (_, i) =>
        grpcFrame(encode(t.EchoRequest, { requestId: `bench-${i}`, payload: randomBytes(ECHO_PAYLOAD_LEN) })),
      );
    case 'unary':
      return Array.from({ length: n }, (_, i) => grpcFrame(encode(t.UnwrapRequest, unwrap(i))));
    case 'stream':
      return Array.from({ length: n }, (_, i) =>
        grpcFrame(encode(t.UnwrapStreamRequest, { correlationId: String(i), request: unwrap(i) })),
      );
    case 'batch': {
      const frames = Math.max(1, Math.floor(n / batchSize));
      return Array.from({ length: frames }, (_, f) =>
        grpcFrame(
          encode(t.BatchUnwrapRequest, {
            requestId: `bench-batch-${f}`,
            items: Array.from({ length: batchSize }, (_, j) => {
              const i = (f * batchSize + j) % n;
              return { envelope: w.envelopes[i], aad: w.aads[i] };
            }),
          }),
        ),
      );
    }
  }
}

/** DEKs checked and how many differed from what the envelope holds. */
export interface Verification {
  checked: number;
  mismatches: number;
}

/** Decodes captured responses in full and compares every DEK with the one generated. */
export function verifyCaptures(
  kind: CallKind,
  w: Workload,
  batchSize: number,
  caps: Capture[],
): Verification {
  const t = hyokTypes();
  const n = w.envelopes.length;
  let checked = 0;
  let mismatches = 0;
  const check = (got: Uint8Array | undefined, want: Buffer) => {
    checked++;
    if (!got || !want.equals(Buffer.from(got))) mismatches++;
  };
  for (const c of caps) {
    if (kind === 'echo') continue;
    if (kind === 'unary') {
      check(decode<{ plaintextDek: Uint8Array }>(t.UnwrapResponse, c.message).plaintextDek, w.deks[c.frame]);
    } else if (kind === 'stream') {
      const r = decode<{ correlationId: string; result?: { plaintextDek: Uint8Array } }>(
        t.UnwrapStreamResponse,
        c.message,
      );
      const i = Number(r.correlationId);
      if (!Number.isInteger(i) || i < 0 || i >= n) {
        checked++;
        mismatches++;
      } else check(r.result?.plaintextDek, w.deks[i]);
    } else {
      const r = decode<{ results: Array<{ result?: { plaintextDek: Uint8Array } }> }>(
        t.BatchUnwrapResponse,
        c.message,
      );
      if (r.results.length !== batchSize) {
        checked++;
        mismatches++;
        continue;
      }
      r.results.forEach((it, j) => check(it.result?.plaintextDek, w.deks[(c.frame * batchSize + j) % n]));
    }
  }
  return { checked, mismatches };
}
