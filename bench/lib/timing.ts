// Durations of the benchmarks, from the environment:
//   HYOKD_BENCH_SECONDS  measured seconds per case (default 2)
//   HYOKD_BENCH_WARMUP   warm-up seconds before each measurement (default 0.5)
//   HYOKD_BENCH_ROUNDS   rounds of the whole set (default 4; short, many rounds pair
//                        the cases more closely in time on a noisy machine)
//   HYOKD_BENCH_QUICK=1  smoke run: 0.5 s, 0.2 s warm-up, 1 round (explicit values still win)

export interface Timing {
  seconds: number;
  warmup: number;
  rounds: number;
  quick: boolean;
}

function num(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min || v > max) {
    throw new Error(`${name} must be a number between ${min} and ${max} (got "${raw}")`);
  }
  return v;
}

export function timingFromEnv(): Timing {
  const quick = ['1', 'true', 'yes'].includes((process.env.HYOKD_BENCH_QUICK ?? '').toLowerCase());
  return {
    quick,
    seconds: num('HYOKD_BENCH_SECONDS', quick ? 0.5 : 2, 0.1, 600),
    warmup: num('HYOKD_BENCH_WARMUP', quick ? 0.2 : 0.5, 0, 60),
    rounds: Math.round(num('HYOKD_BENCH_ROUNDS', quick ? 1 : 4, 1, 20)),
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Monotonic seconds. */
export function nowSec(): number {
  return performance.now() / 1000;
}
