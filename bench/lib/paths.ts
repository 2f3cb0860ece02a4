// Where the benchmarks find the checkout: dist/bench/… when compiled, bench/… when run
// through a TypeScript loader. Both reach the package root by walking up to binding.gyp.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function repoRoot(from: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(from));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'binding.gyp')) && existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('cannot find the hyokd package root (binding.gyp) above the bench script');
}

/** Build outputs of the benchmarks (gitignored). */
export function benchOutDir(): string {
  return join(repoRoot(), 'bench', 'out');
}
