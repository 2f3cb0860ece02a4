// The operator's client commands on the `hyokd` program (main.ts adds `serve`):
//
//   data plane   generate-data-key, wrap, unwrap, batch-wrap, batch-unwrap, get-key
//   admin        keys create|list|get|rotate|enable|disable|protect|delete|recover|purge|
//                adopt|backup|restore|import|import-key|tag|rotation;  policy show|set|explain;
//                domain init|join|show
//   local        policy check FILE;  audit verify|tail|search;  byok pack
//
// Exit codes: 0 ok, 1 the call or check failed (code, reason and safe message printed),
// 2 usage error (the message names the flag). --json prints machine-readable output.
//
// The gRPC client factory (mTLS from a bundle, protos loaded once) is exported for the
// benchmark and tests.
import type { Command } from 'commander';
import { registerAdminCommands } from './admin-commands.js';
import { registerAuditCommands } from './audit-commands.js';
import { registerBatchCommands } from './batch-commands.js';
import { registerByokCommands } from './byok-commands.js';
import { processIo, type CliIo } from './cli-io.js';
import { registerDataCommands } from './data-commands.js';
import { registerDomainCommands } from './domain-commands.js';
import { registerPolicyCommands } from './policy-commands.js';

export { EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, processIo, type CliIo } from './cli-io.js';
export {
  CallError,
  ClientSetupError,
  PROTO_LOADER_OPTIONS,
  callUnary,
  createAdminClient,
  createHyokClient,
  loadHyokProtos,
  readClientTls,
  toCallError,
  type CallOptions,
  type ClientOptions,
  type ClientTls,
  type ClientTlsFiles,
  type HyokProtos,
} from './grpc-client.js';

/**
 * Registers the client commands on `program`. `io` defaults to the process (stdout,
 * stderr, process.exitCode); tests pass a capturing one.
 */
export function registerClientCommands(program: Command, io: CliIo = processIo): void {
  registerDataCommands(program, io);
  registerBatchCommands(program, io);
  registerAdminCommands(program, io);
  registerDomainCommands(program, io);
  registerByokCommands(program, io);
  registerPolicyCommands(program, io);
  registerAuditCommands(program, io);
}
