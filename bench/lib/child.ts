// Runs a measuring child process and reads the JSON line it prints last on stdout.
// The PIN travels in the child's environment, never in its argv.
import { spawn } from 'node:child_process';

export interface ChildResult {
  json: Record<string, unknown>;
  stderr: string;
}

export function runJsonChild(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) {
        reject(new Error(`${file} exited with ${signal ?? code}: ${err.trim() || last}`));
        return;
      }
      try {
        resolve({ json: JSON.parse(last) as Record<string, unknown>, stderr: err });
      } catch {
        reject(new Error(`${file} did not end with a JSON line: ${last.slice(0, 200)}`));
      }
    });
  });
}
