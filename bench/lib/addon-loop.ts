// In-process runner for hyokd's addon: keeps a fixed number of submissions in flight
// (batches of `batchSize` decrypts, or single `run()` calls) on one NativeBackend, for a
// warm-up and then a measured window, and checks every plaintext.
import type { NativeBackend } from '../../src/hsm/native-backend.js';
import type { KeyRef, Op } from '../../src/hsm/types.js';
import type { Measurement } from './measurement.js';
import type { Sample } from './samples.js';
import { mainThreadCpuSeconds, systemBusySeconds } from './procstat.js';
import { nowSec, sleep } from './timing.js';

export interface AddonLoopOptions {
  mode: 'batch' | 'single';
  /** Items per batch (batch mode). */
  batchSize: number;
  /** Submissions in flight at once: batches in batch mode, single calls in single mode. */
  inflight: number;
  warmup: number;
  seconds: number;
}

function decryptOp(kek: KeyRef, s: Sample): Op {
  return { op: 'decrypt', key: kek, iv: s.iv, ciphertext: s.ciphertext, aad: s.aad };
}

export async function addonLoop(
  hsm: NativeBackend,
  kek: KeyRef,
  samples: Sample[],
  o: AddonLoopOptions,
): Promise<Measurement> {
  // Ops are built once: the addon copies their buffers into native memory on submit and
  // never writes to them, so they can be submitted again and again.
  const ops = samples.map((s) => decryptOp(kek, s));
  const size = o.mode === 'batch' ? o.batchSize : 1;
  const t0 = nowSec();
  const warmEnd = t0 + o.warmup;
  const end = warmEnd + o.seconds;
  let ok = 0;
  let errors = 0;
  let mismatches = 0;
  const codes: Record<string, number> = {};
  const countError = (code: string) => {
    errors++;
    codes[code] = (codes[code] ?? 0) + 1;
  };

  async function lane(index: number): Promise<void> {
    let next = (index * size * 7) % samples.length;
    for (;;) {
      const first = next;
      next = (next + size) % samples.length;
      if (o.mode === 'single') {
        const s = samples[first];
        let good = false;
        let code = '';
        try {
          const r = await hsm.run(ops[first] as Extract<Op, { op: 'decrypt' }>);
          good = r.plaintext.equals(s.plaintext);
          if (!good) code = 'mismatch';
        } catch (e) {
          code = String((e as { code?: unknown }).code ?? (e as Error).message);
        }
        const t = nowSec();
        if (t >= end) return;
        if (t < warmEnd) continue;
        if (good) ok++;
        else if (code === 'mismatch') mismatches++;
        else countError(code);
      } else {
        const batch: Op[] = new Array<Op>(size);
        for (let k = 0; k < size; k++) batch[k] = ops[(first + k) % samples.length];
        let results;
        try {
          results = await hsm.batch(batch);
        } catch (e) {
          // The whole batch was refused (queue full, closed).
          if (nowSec() >= end) return;
          if (nowSec() >= warmEnd)
            for (let k = 0; k < size; k++) countError(String((e as { code?: unknown }).code));
          continue;
        }
        const t = nowSec();
        if (t >= end) return;
        if (t < warmEnd) continue;
        for (let k = 0; k < size; k++) {
          const r = results[k];
          if (!r.ok) countError(r.error.code);
          else if (
            (r as unknown as { plaintext: Buffer }).plaintext.equals(
              samples[(first + k) % samples.length].plaintext,
            )
          )
            ok++;
          else mismatches++;
        }
      }
    }
  }

  let cpu0: NodeJS.CpuUsage | undefined;
  let cpu1: NodeJS.CpuUsage | undefined;
  let sys0 = Number.NaN;
  let sys1 = Number.NaN;
  let main0 = Number.NaN;
  let main1 = Number.NaN;
  const sampler = (async () => {
    await sleep(Math.max(0, (warmEnd - nowSec()) * 1000));
    cpu0 = process.cpuUsage();
    sys0 = systemBusySeconds();
    main0 = mainThreadCpuSeconds();
    await sleep(Math.max(0, (end - nowSec()) * 1000));
    cpu1 = process.cpuUsage(cpu0);
    sys1 = systemBusySeconds();
    main1 = mainThreadCpuSeconds();
  })();
  await Promise.all([...Array.from({ length: o.inflight }, (_, k) => lane(k)), sampler]);
  return {
    ops: ok,
    seconds: o.seconds,
    opsPerSec: ok / o.seconds,
    errors,
    mismatches,
    cpuSeconds: cpu1 ? (cpu1.user + cpu1.system) / 1e6 : Number.NaN,
    systemBusySeconds: sys1 - sys0,
    // The JS thread's share of the CPU (the rest is the native workers and V8's helpers).
    detail: { mode: o.mode, batchSize: size, inflight: o.inflight, codes, jsThreadCpuSeconds: main1 - main0 },
  };
}
