// Where the client commands read and write, and how they end. The process version writes
// to stdout/stderr and sets process.exitCode; tests pass a capturing version and run the
// commands in-process.
//
// Exit codes: 0 ok, 1 the call (or the local check) failed, 2 usage error.

import type { Readable } from 'node:stream';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export interface CliIo {
  /** Writes to standard output (the text includes its own newlines). */
  out(text: string): void;
  /** Writes to standard error. */
  err(text: string): void;
  /** Standard input, for commands that read `-`. */
  stdin(): Readable;
  /** Environment (HYOKD_HOME, HYOKD_ENDPOINT). */
  env: Readonly<Record<string, string | undefined>>;
  /** Working directory that relative defaults resolve against. */
  cwd(): string;
  /** Records the exit status of a command that ran to its end. */
  setExitCode(code: number): void;
  /**
   * Ends the run now: used by commander for usage errors and --help, before any work.
   * Must not return.
   */
  exit(code: number): never;
}

export const processIo: CliIo = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
  stdin: () => process.stdin,
  env: process.env,
  cwd: () => process.cwd(),
  setExitCode: (code) => {
    process.exitCode = code;
  },
  exit: (code) => process.exit(code),
};

/** A usage error: exit 2, message names the flag. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A local failure that is not a gRPC call (file unreadable, audit damaged …): exit 1. */
export class CommandFailed extends Error {
  override readonly name = 'CommandFailed';
}
