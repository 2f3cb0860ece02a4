// Loads hyok.v1 once with the loader options documented at the top of hyok.proto.
import { join } from 'node:path';
import { loadPackageDefinition, type GrpcObject, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';
import { protoDir } from '../errors.js';

export const HYOK_SERVICE_NAME = 'hyok.v1.Hyok';
/** Relative to the proto directory (protoDir). */
export const HYOK_PROTO_FILE = 'hyok/v1/hyok.proto';

export const PROTO_LOADER_OPTIONS: Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

let cached: PackageDefinition | undefined;

/** The package definition of hyok/v1/hyok.proto (loaded once per process). */
export function hyokPackageDefinition(): PackageDefinition {
  if (cached) return cached;
  const dir = protoDir();
  cached = loadSync(join(dir, HYOK_PROTO_FILE), { ...PROTO_LOADER_OPTIONS, includeDirs: [dir] });
  return cached;
}

type Message = Record<string, unknown> | null | undefined;
const dekOf = (m: Message): unknown => m?.plaintextDek;

/**
 * Where each response of hyok.v1.Hyok holds plaintext DEKs (messages as the loader gives
 * them: camelCase, `result` for a nested UnwrapResponse).
 */
const PLAINTEXT_DEKS: Record<string, (response: Message) => unknown[]> = {
  GenerateDataKey: (m) => [dekOf(m)],
  Unwrap: (m) => [dekOf(m)],
  BatchUnwrap: (m) =>
    (Array.isArray(m?.results) ? m.results : []).map((r: Message) => dekOf(r?.result as Message)),
  UnwrapStream: (m) => [dekOf(m?.result as Message)],
};

/**
 * The grpc-js service definition of hyok.v1.Hyok, for the server. The responses that carry
 * plaintext DEKs are serialized by the loader's own serializer and their DEK Buffers zeroed
 * right after: the encoded message is a copy, and grpc-js needs nothing else of the
 * response object, whose Buffers (views of the addon's batch of plaintexts) would
 * otherwise keep the DEKs readable in memory until the garbage collector reuses it; under
 * load the objects of finished calls live until the next full collection
 * (bench/RESULTS.md, fourteenth pass). The encoded copy and the TLS layer's buffers belong
 * to grpc-js and Node and are not zeroed.
 */
export function hyokServiceDefinition(): ServiceDefinition {
  const grpcObj = loadPackageDefinition(hyokPackageDefinition()) as unknown as {
    hyok: { v1: { Hyok: { service: ServiceDefinition } } };
  };
  const service = { ...grpcObj.hyok.v1.Hyok.service };
  for (const [method, deks] of Object.entries(PLAINTEXT_DEKS)) {
    const def = service[method]!;
    const serialize = def.responseSerialize;
    service[method] = {
      ...def,
      responseSerialize: (response: Message) => {
        const bytes = serialize(response);
        for (const dek of deks(response)) if (dek instanceof Uint8Array) dek.fill(0);
        return bytes;
      },
    };
  }
  return service;
}

/** The generated grpc-js object tree (clients in tests and the CLI). */
export function hyokGrpcObject(): GrpcObject {
  return loadPackageDefinition(hyokPackageDefinition());
}
