// Loads hyok.admin.v1 once, with the loader options documented at the top of admin.proto
// (the same as hyok.v1's).
import { join } from 'node:path';
import { loadPackageDefinition, type GrpcObject, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { protoDir } from '../errors.js';
import { PROTO_LOADER_OPTIONS } from './proto.js';

export const ADMIN_SERVICE_NAME = 'hyok.admin.v1.KeyAdmin';
/** Relative to the proto directory (protoDir). */
export const ADMIN_PROTO_FILE = 'hyok/admin/v1/admin.proto';

let cached: PackageDefinition | undefined;

/** The package definition of hyok/admin/v1/admin.proto (loaded once per process). */
export function adminPackageDefinition(): PackageDefinition {
  if (cached) return cached;
  const dir = protoDir();
  cached = loadSync(join(dir, ADMIN_PROTO_FILE), {
    ...PROTO_LOADER_OPTIONS,
    includeDirs: [dir],
  });
  return cached;
}

/** The generated grpc-js object tree (clients in tests and the CLI). */
export function adminGrpcObject(): GrpcObject {
  return loadPackageDefinition(adminPackageDefinition());
}

/** The grpc-js service definition of hyok.admin.v1.KeyAdmin. */
export function adminServiceDefinition(): ServiceDefinition {
  const grpcObj = adminGrpcObject() as unknown as {
    hyok: { admin: { v1: { KeyAdmin: { service: ServiceDefinition } } } };
  };
  return grpcObj.hyok.admin.v1.KeyAdmin.service;
}
