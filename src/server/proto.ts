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

/** The grpc-js service definition of hyok.v1.Hyok. */
export function hyokServiceDefinition(): ServiceDefinition {
  const grpcObj = loadPackageDefinition(hyokPackageDefinition()) as unknown as {
    hyok: { v1: { Hyok: { service: ServiceDefinition } } };
  };
  return grpcObj.hyok.v1.Hyok.service;
}

/** The generated grpc-js object tree (clients in tests and the CLI). */
export function hyokGrpcObject(): GrpcObject {
  return loadPackageDefinition(hyokPackageDefinition());
}
