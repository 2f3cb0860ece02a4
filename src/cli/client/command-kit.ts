// Shared plumbing of the client commands: making a subcommand that reports usage errors
// with exit code 2 through the given CliIo, running an action so that every failure ends
// in one clear message and the right exit code, and printing results.

import { Command, CommanderError } from 'commander';
import { CommandFailed, EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, type CliIo } from './cli-io.js';
import { CallError } from './grpc-client.js';

/** Applies the io-bound output and exit handling to a command (inherited by its subcommands). */
export function configureCommand(cmd: Command, io: CliIo): Command {
  cmd.configureOutput({
    writeOut: (s) => io.out(s),
    writeErr: (s) => io.err(s),
    outputError: (s, write) => write(s),
  });
  cmd.exitOverride((e: CommanderError) => {
    // --help and --version exit 0; every parse error (unknown flag, missing argument or
    // required option, bad choice) is a usage error.
    io.exit(e.exitCode === 0 ? EXIT_OK : EXIT_USAGE);
  });
  cmd.showSuggestionAfterError(true);
  return cmd;
}

/** `parent.command(name)` with the io handling set on the new command. */
export function subcommand(parent: Command, name: string, io: CliIo): Command {
  return configureCommand(parent.command(name), io);
}

/** Prints a failure and records its exit code. `json` prints the error object on stdout too. */
export function reportFailure(io: CliIo, err: unknown, json: boolean, prog: string): void {
  if (err instanceof UsageError) {
    io.err(`${prog}: error: ${err.message}\n`);
    io.setExitCode(EXIT_USAGE);
    return;
  }
  if (err instanceof CallError) {
    const what = err.reason ? `${err.reason} (${err.status} ${err.code})` : `${err.status} (${err.code})`;
    const lines = [`${prog}: error: ${what}: ${err.message}`];
    for (const [k, v] of Object.entries(err.metadata)) lines.push(`  ${k}: ${v}`);
    if (err.reason === 'QUORUM_REQUIRED' && err.metadata.quorumRequestId) {
      lines.push(
        `  once approved, repeat the command with --quorum-request-id ${err.metadata.quorumRequestId}`,
      );
    }
    io.err(lines.join('\n') + '\n');
    if (json) {
      io.out(
        JSON.stringify({
          error: {
            code: err.code,
            status: err.status,
            reason: err.reason,
            message: err.message,
            metadata: err.metadata,
          },
        }) + '\n',
      );
    }
    io.setExitCode(EXIT_FAILED);
    return;
  }
  const message = err instanceof Error ? err.message : String(err);
  io.err(`${prog}: error: ${message}\n`);
  if (json && err instanceof CommandFailed) io.out(JSON.stringify({ error: { message } }) + '\n');
  io.setExitCode(EXIT_FAILED);
}

/** The full command name for messages, e.g. "hyokd keys create". */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Sets an async action that gets the command's parsed options; any thrown error is
 * reported (exit 2 for UsageError, 1 otherwise). The action returns its exit code or
 * nothing for 0.
 */
export function runAction<O>(
  cmd: Command,
  io: CliIo,
  fn: (args: string[], opts: O) => Promise<number | void>,
): Command {
  cmd.action(async (...all: unknown[]) => {
    const self = all[all.length - 1] as Command;
    const opts = self.opts<O & { json?: boolean }>();
    const args = self.args.slice(0, self.registeredArguments.length);
    try {
      const code = await fn(args, opts);
      io.setExitCode(code ?? EXIT_OK);
    } catch (err) {
      reportFailure(io, err, opts.json === true, commandPath(self));
    }
  });
  return cmd;
}

/** Prints a result: JSON (one line) with --json, else the human text. */
export function print(io: CliIo, json: boolean | undefined, human: string | string[], value: unknown): void {
  if (json) io.out(JSON.stringify(value) + '\n');
  else io.out((Array.isArray(human) ? human.join('\n') : human) + '\n');
}
