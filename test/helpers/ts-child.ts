// Running a TypeScript file of this repository in a child node process from a test.

/**
 * The `--import` flags of this test process that load TypeScript (tap's tsx loader), for a
 * child node process that runs a `.ts` file; not tap's process-info hook, which a child
 * outside tap's own spawning must not load.
 */
export function typeScriptLoaders(): string[] {
  return process.execArgv.filter((a) => a.startsWith('--import') && !a.includes('processinfo'));
}
