// What every benchmark script shares: progress lines on stderr (stdout is the report and
// its JSON line), and how it ends when something throws.

export function log(line: string): void {
  process.stderr.write(line + '\n');
}

/** Runs a benchmark's `main`; if it throws, prints `<name> failed: <stack>` and exits 1. */
export function runBench(name: string, main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    process.stderr.write(`${name} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
