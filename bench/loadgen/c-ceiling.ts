// The HSM ceiling for the gRPC benchmark: bench/c_loop.c (built and owned by the native
// engine benchmark) decrypting 32-byte DEKs with AES-256-GCM under a token AES-256 KEK,
// straight on the PKCS#11 module, in its own process. It gets its own SoftHSM2 token in a
// temp dir (the same kind of key as the daemon's demo KEK: a token object, AES-256), so it
// never shares a token with the running server.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NativeBackend } from '../../src/hsm/native-backend.js';
import { ensureSoftHsmToken, SOFTHSM_MODULE } from '../../src/hsm/softhsm.js';
import type { KeyRef } from '../../src/hsm/types.js';
import { buildCLoop } from '../lib/c-build.js';
import { runJsonChild } from '../lib/child.js';
import { measurementFromChildJson, type Measurement } from '../lib/measurement.js';
import { makeKekAndSamples } from '../lib/samples.js';

const TOKEN_LABEL = 'hyokd-bench-c';
const SAMPLE_COUNT = 256;

export interface CCeiling {
  run(threads: number, warmup: number, seconds: number): Promise<Measurement>;
}

/** Provisions the token, KEK and samples under `dir` and compiles the loop. */
export async function prepareCCeiling(dir: string): Promise<CCeiling> {
  const tok = await ensureSoftHsmToken({ dir, secretsDir: join(dir, 'secrets'), label: TOKEN_LABEL });
  const softhsmConf = process.env.SOFTHSM2_CONF;
  const kek: KeyRef = { id: randomBytes(16), cls: 'secret' };
  const hsm = await NativeBackend.open({
    modulePath: SOFTHSM_MODULE,
    tokenLabel: TOKEN_LABEL,
    pin: readFileSync(tok.pinFile),
    sessions: 1,
  });
  const samplesPath = join(dir, 'samples.bin');
  try {
    await makeKekAndSamples(hsm, kek, SAMPLE_COUNT, samplesPath);
  } finally {
    await hsm.close();
  }
  const binary = buildCLoop();
  return {
    async run(threads, warmup, seconds) {
      const { json: j } = await runJsonChild(
        binary,
        [],
        {
          ...process.env,
          SOFTHSM2_CONF: softhsmConf,
          HYOKD_BENCH_MODULE: SOFTHSM_MODULE,
          HYOKD_BENCH_TOKEN: TOKEN_LABEL,
          // The loop zeroes and unsets it after login; never in argv.
          HYOKD_BENCH_PIN: readFileSync(tok.pinFile, 'utf8'),
          HYOKD_BENCH_KEK_ID: kek.id.toString('hex'),
          HYOKD_BENCH_SAMPLES: samplesPath,
          HYOKD_BENCH_THREADS: String(threads),
          HYOKD_BENCH_WARMUP: String(warmup),
          HYOKD_BENCH_SECONDS: String(seconds),
        },
        (warmup + seconds + 60) * 1000,
      );
      return measurementFromChildJson(j);
    },
  };
}
