// Compiles the benchmarks' C programs into bench/out/ (gitignored) when a binary is missing
// or older than its source: bench/c_loop.c (the PKCS#11 ceiling) and
// bench/loadgen/grpc_gen.c (the gRPC load generator, on libnghttp2 and OpenSSL, whose
// packages scripts/ensure.sh installs).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { benchOutDir, repoRoot } from './paths.js';

export const P11_INCLUDE = '/usr/include/p11-kit-1';

interface CProgram {
  /** Source, relative to the repository root. */
  source: string;
  /** Binary name in bench/out/. */
  output: string;
  flags: string[];
  libs: string[];
  /** Headers the source needs, with the Debian package that provides each. */
  headers: Array<{ path: string; pkg: string }>;
}

const C_LOOP: CProgram = {
  source: 'bench/c_loop.c',
  output: 'c_loop',
  flags: [`-I${P11_INCLUDE}`, '-DCRYPTOKI_COMPAT'],
  libs: ['-ldl', '-lpthread'],
  headers: [],
};

const GRPC_GEN: CProgram = {
  source: 'bench/loadgen/grpc_gen.c',
  output: 'grpc_gen',
  flags: ['-std=c11'],
  libs: ['-lnghttp2', '-lssl', '-lcrypto', '-lpthread'],
  headers: [
    { path: '/usr/include/nghttp2/nghttp2.h', pkg: 'libnghttp2-dev' },
    { path: '/usr/include/openssl/ssl.h', pkg: 'libssl-dev' },
  ],
};

/**
 * The headers must be there: scripts/ensure.sh installs their packages (every `npm run
 * bench:*` and `npm test` runs it first), so this only says what is missing and how to
 * get it when a benchmark was started some other way.
 */
function checkHeaders(p: CProgram): void {
  const missing = p.headers.filter((h) => !existsSync(h.path));
  if (missing.length === 0) return;
  const pkgs = missing.map((h) => h.pkg).join(' ');
  throw new Error(
    `building ${p.source} needs ${missing.map((h) => h.path).join(', ')}: run sh scripts/ensure.sh ` +
      `(it installs them as root), or apt-get install -y ${pkgs}`,
  );
}

/** The path of the program's binary, compiled first when missing or older than its source. */
function buildC(p: CProgram): string {
  const src = join(repoRoot(), p.source);
  const out = join(benchOutDir(), p.output);
  mkdirSync(benchOutDir(), { recursive: true });
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  checkHeaders(p);
  // Compile to a private name and rename: a benchmark and a test building at the same
  // time never run a half-written binary.
  const tmp = `${out}.${process.pid}.tmp`;
  const args = ['-O2', '-Wall', '-Wextra', ...p.flags, src, '-o', tmp, ...p.libs];
  try {
    execFileSync('cc', args, { stdio: ['ignore', 'inherit', 'inherit'] });
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`compiling ${p.source} failed (cc ${args.join(' ')}): ${(e as Error).message}`);
  }
  return out;
}

export function buildCLoop(): string {
  return buildC(C_LOOP);
}

export function buildGrpcGen(): string {
  return buildC(GRPC_GEN);
}
