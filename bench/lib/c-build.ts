// Compiles bench/c_loop.c into bench/out/c_loop (gitignored) when the binary is missing
// or older than its source.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { benchOutDir, repoRoot } from './paths.js';

export const P11_INCLUDE = '/usr/include/p11-kit-1';

export function buildCLoop(): string {
  const src = join(repoRoot(), 'bench', 'c_loop.c');
  const out = join(benchOutDir(), 'c_loop');
  mkdirSync(benchOutDir(), { recursive: true });
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  const args = [
    '-O2',
    '-Wall',
    '-Wextra',
    `-I${P11_INCLUDE}`,
    '-DCRYPTOKI_COMPAT',
    src,
    '-o',
    out,
    '-ldl',
    '-lpthread',
  ];
  try {
    execFileSync('cc', args, { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (e) {
    throw new Error(`compiling bench/c_loop.c failed (cc ${args.join(' ')}): ${(e as Error).message}`);
  }
  return out;
}
