#!/usr/bin/env node
// hyokd: the daemon (`serve`) and the operator's client commands, one program.
import { Command } from 'commander';
import { registerClientCommands } from './client/index.js';
import { registerServeCommand } from './serve.js';

// grpc-js passes the endpoint's host to TLS as the server name even when it is an IP
// address (127.0.0.1 in the quick start), and Node then warns on every connection
// (DEP0123). The certificate is still checked against the IP SAN; only that one notice
// is dropped, every other warning still prints.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const code =
    typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
  if (code === 'DEP0123') return;
  (emitWarning as (...a: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

const program = new Command('hyokd')
  .description('HSM bridge daemon: wrap/unwrap DEKs with keys that never leave your HSM')
  .showHelpAfterError();
registerServeCommand(program);
registerClientCommands(program);

await program.parseAsync(process.argv).catch((e: unknown) => {
  // Startup failures: say what failed without internals that could hold secrets.
  const err = e as { name?: string; code?: string; message?: string };
  process.stderr.write(
    `hyokd: ${err.name ?? 'Error'}${err.code ? ` ${err.code}` : ''}: ${err.message ?? String(e)}\n`,
  );
  // Exit now: a half-started daemon may hold HSM worker threads and timers open.
  process.exit(1);
});
