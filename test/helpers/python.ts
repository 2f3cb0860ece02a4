// The Python side of the interoperability tests (test/interop/): Debian's interpreter,
// where scripts/ensure.sh installs python3-grpcio, python3-protobuf and
// python3-cryptography. Secrets (key material, DEKs) go on stdin, never in argv.
import { execFile } from 'node:child_process';

export const PYTHON = '/usr/bin/python3';

/** Path of a script in test/interop/. */
export function interopScript(name: string): string {
  return new URL(`../interop/${name}`, import.meta.url).pathname;
}

/** Runs test/interop/`script` with `args`, `input` as JSON on stdin; resolves its one JSON line. */
export function runPython<T = Record<string, unknown>>(
  script: string,
  opts: { args?: string[]; input?: unknown } = {},
): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      PYTHON,
      [interopScript(script), ...(opts.args ?? [])],
      { timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${script}: ${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as T);
      },
    );
    child.stdin!.end(opts.input === undefined ? '' : JSON.stringify(opts.input));
  });
}
