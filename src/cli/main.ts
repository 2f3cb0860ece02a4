#!/usr/bin/env node
// hyokd: the daemon (`serve`) and the operator's client commands, one program.
import { Command } from 'commander';
import { registerClientCommands } from './client/index.js';
import { registerServeCommand } from './serve.js';

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
