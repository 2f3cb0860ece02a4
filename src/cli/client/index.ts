import type { Command } from 'commander';

/**
 * Registers the operator client commands (data plane, admin, local policy/audit tools)
 * on the `hyokd` program. The commands are filled in by the files beside this one.
 */
export function registerClientCommands(program: Command): void {
  void program;
}
