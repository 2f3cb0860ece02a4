// Child process of bench/native.ts: the same AES-256-GCM decrypts through pkcs11js in its
// async mode (C_DecryptInit is synchronous there; C_DecryptAsync runs C_Decrypt on libuv's
// thread pool). It runs in its own process because C_Initialize is process-wide.
//
// Configuration from the environment, like bench/c_loop.c (the PIN is never in argv):
//   HYOKD_BENCH_MODULE, HYOKD_BENCH_TOKEN, HYOKD_BENCH_PIN, HYOKD_BENCH_KEK_ID (hex),
//   HYOKD_BENCH_SAMPLES, HYOKD_BENCH_LANES (sessions, one decrypt in flight each),
//   HYOKD_BENCH_WARMUP, HYOKD_BENCH_SECONDS.
// Prints one JSON line: the fields of a Measurement plus lanes.
import pkcs11js from 'pkcs11js';
import { readSamples } from './samples.js';
import { systemBusySeconds } from './procstat.js';
import { nowSec, sleep } from './timing.js';

function need(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`missing environment variable ${name}`);
  return v;
}

async function main(): Promise<void> {
  const lanes = Number(need('HYOKD_BENCH_LANES'));
  const warmup = Number(need('HYOKD_BENCH_WARMUP'));
  const seconds = Number(need('HYOKD_BENCH_SECONDS'));
  if (!(lanes >= 1 && lanes <= 256) || !(warmup >= 0) || !(seconds > 0))
    throw new Error('bad lanes or durations');
  const samples = readSamples(need('HYOKD_BENCH_SAMPLES'));
  const kekId = Buffer.from(need('HYOKD_BENCH_KEK_ID'), 'hex');
  const label = need('HYOKD_BENCH_TOKEN');

  const p11 = new pkcs11js.PKCS11();
  p11.load(need('HYOKD_BENCH_MODULE'));
  // With flags = 0 SoftHSM2 turns its locks off and crashes under concurrent calls.
  p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === label);
  if (!slot) throw new Error('no token with that label');
  const keeper = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
  // pkcs11js takes the PIN as a string; drop it from the environment once used.
  p11.C_Login(keeper, pkcs11js.CKU_USER, need('HYOKD_BENCH_PIN'));
  delete process.env.HYOKD_BENCH_PIN;
  p11.C_FindObjectsInit(keeper, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_ID, value: kekId },
    { type: pkcs11js.CKA_TOKEN, value: true },
  ]);
  const found = p11.C_FindObjects(keeper, 2);
  p11.C_FindObjectsFinal(keeper);
  if (found.length !== 1) throw new Error(`expected one KEK, found ${found.length}`);
  const kek = found[0];

  const t0 = nowSec();
  const warmEnd = t0 + warmup;
  const end = warmEnd + seconds;
  let ops = 0;
  let errors = 0;
  let mismatches = 0;
  const codes: Record<string, number> = {};

  async function lane(index: number): Promise<void> {
    const session = p11.C_OpenSession(slot!, pkcs11js.CKF_SERIAL_SESSION);
    let i = index * 7;
    try {
      for (;;) {
        const s = samples[i++ % samples.length];
        let ok = false;
        let code = '';
        try {
          const parameter: pkcs11js.GcmParams = {
            type: pkcs11js.CK_PARAMS_GCM,
            iv: s.iv,
            ivBits: s.iv.length * 8,
            aad: s.aad,
            tagBits: 128,
          };
          p11.C_DecryptInit(session, { mechanism: pkcs11js.CKM_AES_GCM, parameter }, kek);
          const out = await p11.C_DecryptAsync(session, s.ciphertext, Buffer.alloc(s.ciphertext.length));
          ok = out.equals(s.plaintext);
          if (!ok) code = 'mismatch';
        } catch (e) {
          code = (e as Error).message || 'error';
        }
        const t = nowSec();
        if (t >= end) break;
        if (t < warmEnd) continue;
        if (ok) ops++;
        else if (code === 'mismatch') mismatches++;
        else {
          errors++;
          codes[code] = (codes[code] ?? 0) + 1;
        }
      }
    } finally {
      p11.C_CloseSession(session);
    }
  }

  let cpu0: NodeJS.CpuUsage | undefined;
  let cpu1: NodeJS.CpuUsage | undefined;
  let sys0 = Number.NaN;
  let sys1 = Number.NaN;
  const sampler = (async () => {
    await sleep(Math.max(0, (warmEnd - nowSec()) * 1000));
    cpu0 = process.cpuUsage();
    sys0 = systemBusySeconds();
    await sleep(Math.max(0, (end - nowSec()) * 1000));
    cpu1 = process.cpuUsage(cpu0);
    sys1 = systemBusySeconds();
  })();
  await Promise.all([...Array.from({ length: lanes }, (_, k) => lane(k)), sampler]);
  const cpuSeconds = cpu1 ? (cpu1.user + cpu1.system) / 1e6 : Number.NaN;

  p11.C_Logout(keeper);
  p11.C_CloseSession(keeper);
  p11.C_Finalize();
  process.stdout.write(
    JSON.stringify({
      lanes,
      ops,
      seconds,
      ops_per_sec: ops / seconds,
      errors,
      mismatches,
      cpu_seconds: cpuSeconds,
      system_busy_seconds: sys1 - sys0,
      codes,
    }) + '\n',
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`pkcs11js loop failed: ${(e as Error).message}\n`);
  process.exit(2);
});
