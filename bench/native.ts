// Native engine benchmark: AES-256-GCM decrypt of a 32-byte DEK with AAD under a token
// KEK on SoftHSM2, measured in one run, on one token, five ways:
//
//   c_loop              bench/c_loop.c calling the module directly (the ceiling), own process
//   addon_batch         hyokd's addon, batches of 64 decrypts, several batches in flight
//   addon_single        hyokd's addon, one run() per decrypt, many in flight
//   addon_session_copy  addon_batch with sessionObjectCopies (a session copy of the KEK)
//   pkcs11js_async      pkcs11js 2.x, C_DecryptInit + C_DecryptAsync, best of 1/2/4/8 lanes, own process
//
// Each set runs with 1 and with 2 threads (C threads = addon worker sessions), in rounds
// whose order alternates; each case keeps its best round. Usage:
//   npm run bench:native                    (2 s per case, 0.5 s warm-up, 4 rounds)
//   HYOKD_BENCH_QUICK=1 npm run bench:native (smoke run)
// Environment: HYOKD_BENCH_SECONDS, _WARMUP, _ROUNDS, _QUICK (see bench/lib/timing.ts),
// HYOKD_BENCH_THREADS (default "1,2"), HYOKD_BENCH_LANES (pkcs11js, default "1,2,4,8"),
// HYOKD_BENCH_CASES (comma-separated subset, default all; missing cases print null),
// HYOKD_BENCH_QUIET_WAIT (seconds to wait before each case for the machine to be idle
// (< 0.3 busy cores), default 0: on a shared machine it makes the rounds cleaner).
// The last line of stdout is one JSON object for tools.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NativeBackend } from '../src/hsm/native-backend.js';
import { ensureSoftHsmToken, SOFTHSM_MODULE } from '../src/hsm/softhsm.js';
import type { KeyRef } from '../src/hsm/types.js';
import { addonLoop } from './lib/addon-loop.js';
import { buildCLoop } from './lib/c-build.js';
import { runJsonChild } from './lib/child.js';
import { fmtAgainstTarget, fmtRate, fmtRatio, roundRatio, table } from './lib/format.js';
import { machineInfo, reportHead } from './lib/machine.js';
import {
  coresBusy,
  cpuMicrosPerOp,
  measurementFromChildJson,
  otherCores,
  type Measurement,
} from './lib/measurement.js';
import { repoRoot } from './lib/paths.js';
import { waitForQuiet } from './lib/procstat.js';
import { makeKekAndSamples, type Sample } from './lib/samples.js';
import { best, median } from './lib/stats.js';
import { timingFromEnv, type Timing } from './lib/timing.js';
import { log, runBench } from './lib/script.js';

const TOKEN_LABEL = 'hyokd-bench';
const SAMPLE_COUNT = 256;
const BATCH_SIZE = 64;
/** Batches in flight: enough that a worker never waits for JS to hand it the next batch. */
const BATCHES_IN_FLIGHT = 4;
/** run() calls in flight in the single-op case. */
const SINGLES_IN_FLIGHT = 256;

const TARGETS = { ratio_vs_c: 0.9, ratio_vs_pkcs11js: 1.5, ratio_session_copy_vs_c: 2 };

type AddonCase = 'addon_batch' | 'addon_single' | 'addon_session_copy';
type CaseName = 'c_loop' | AddonCase | 'pkcs11js_async';

interface Job {
  name: CaseName;
  /** Threads (C, addon sessions) or lanes (pkcs11js). */
  width: number;
}

function intList(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (!raw) return fallback;
  const xs = raw.split(',').map((x) => Number(x.trim()));
  if (xs.some((x) => !Number.isInteger(x) || x < 1 || x > 64)) {
    throw new Error(`${name} must be a comma-separated list of integers 1..64 (got "${raw}")`);
  }
  return xs;
}

interface Bench {
  dir: string;
  samplesPath: string;
  samples: Sample[];
  kek: KeyRef;
  pin: () => Buffer;
  cLoop: string;
  timing: Timing;
}

/** A token in a temp dir, a token AES-256 KEK, and SAMPLE_COUNT encrypted DEKs. */
async function provision(dir: string, timing: Timing): Promise<Bench & { libraryVersion: string }> {
  const tok = await ensureSoftHsmToken({ dir, secretsDir: join(dir, 'secrets'), label: TOKEN_LABEL });
  const pin = () => readFileSync(tok.pinFile);
  const kek: KeyRef = { id: randomBytes(16), cls: 'secret' };
  const hsm = await NativeBackend.open({
    modulePath: SOFTHSM_MODULE,
    tokenLabel: TOKEN_LABEL,
    pin: pin(),
    sessions: 1,
  });
  try {
    const samplesPath = join(dir, 'samples.bin');
    const samples = await makeKekAndSamples(hsm, kek, SAMPLE_COUNT, samplesPath);
    const m = hsm.module;
    return {
      dir,
      samplesPath,
      samples,
      kek,
      pin,
      cLoop: buildCLoop(),
      timing,
      libraryVersion: `${m.libraryDescription.trim()} ${m.libraryVersion} (Cryptoki ${m.cryptokiVersion})`,
    };
  } finally {
    await hsm.close();
  }
}

function childEnv(b: Bench, extra: Record<string, string>): NodeJS.ProcessEnv {
  return {
    ...process.env,
    SOFTHSM2_CONF: process.env.SOFTHSM2_CONF,
    HYOKD_BENCH_MODULE: SOFTHSM_MODULE,
    HYOKD_BENCH_TOKEN: TOKEN_LABEL,
    HYOKD_BENCH_PIN: b.pin().toString('utf8'),
    HYOKD_BENCH_KEK_ID: b.kek.id.toString('hex'),
    HYOKD_BENCH_SAMPLES: b.samplesPath,
    HYOKD_BENCH_WARMUP: String(b.timing.warmup),
    HYOKD_BENCH_SECONDS: String(b.timing.seconds),
    ...extra,
  };
}

async function runCLoop(b: Bench, threads: number): Promise<Measurement> {
  const timeout = (b.timing.warmup + b.timing.seconds + 60) * 1000;
  const { json } = await runJsonChild(
    b.cLoop,
    [],
    childEnv(b, { HYOKD_BENCH_THREADS: String(threads) }),
    timeout,
  );
  return measurementFromChildJson(json, { perThread: json.per_thread, firstErrorRv: json.first_error });
}

async function runPkcs11js(b: Bench, lanes: number): Promise<Measurement> {
  const timeout = (b.timing.warmup + b.timing.seconds + 60) * 1000;
  const script = join(repoRoot(), 'dist', 'bench', 'lib', 'pkcs11js-loop.js');
  const { json } = await runJsonChild(
    process.execPath,
    [script],
    childEnv(b, { HYOKD_BENCH_LANES: String(lanes) }),
    timeout,
  );
  return measurementFromChildJson(json, { lanes, codes: json.codes });
}

async function runAddon(b: Bench, name: AddonCase, sessions: number): Promise<Measurement> {
  const hsm = await NativeBackend.open({
    modulePath: SOFTHSM_MODULE,
    tokenLabel: TOKEN_LABEL,
    pin: b.pin(),
    sessions,
    queueCapacity: 100_000,
    sessionObjectCopies: name === 'addon_session_copy',
  });
  try {
    const m = await addonLoop(hsm, b.kek, b.samples, {
      mode: name === 'addon_single' ? 'single' : 'batch',
      batchSize: BATCH_SIZE,
      inflight: name === 'addon_single' ? SINGLES_IN_FLIGHT : BATCHES_IN_FLIGHT,
      warmup: b.timing.warmup,
      seconds: b.timing.seconds,
    });
    // The engine's own error counters must agree that nothing failed.
    const engineErrors = Object.values(hsm.counters().errors).reduce((a, n) => a + n, 0);
    m.detail = { ...m.detail, sessions, engineErrors };
    if (engineErrors > m.errors) m.errors = engineErrors;
    return m;
  } finally {
    await hsm.close();
  }
}

function runJob(b: Bench, j: Job): Promise<Measurement> {
  if (j.name === 'c_loop') return runCLoop(b, j.width);
  if (j.name === 'pkcs11js_async') return runPkcs11js(b, j.width);
  return runAddon(b, j.name, j.width);
}

const key = (j: Job) => `${j.name}@${j.width}`;

/** CPU of the JS thread per operation (addon cases), the part of the cost that is not the module's. */
function jsMicrosPerOp(m: Measurement): string {
  const js = Number(m.detail?.jsThreadCpuSeconds);
  return Number.isFinite(js) && m.ops > 0 ? ((js * 1e6) / m.ops).toFixed(1) : '-';
}

interface SetFigures {
  threads: number;
  c_loop: number;
  addon_batch: number;
  addon_single: number;
  addon_session_copy: number;
  pkcs11js_async: number;
  pkcs11js_lanes: number;
  ratio_vs_c: number;
  ratio_vs_pkcs11js: number;
  ratio_session_copy_vs_c: number;
  /** The same ratios computed inside each round (cases measured minutes apart at most), median. */
  round_ratio_vs_c: number;
  round_ratio_session_copy_vs_c: number;
  /** addon_batch / c_loop in operations per CPU-second of each process (best rounds). */
  cpu_efficiency_vs_c: number;
  /** Cores other processes took during the best rounds of c_loop and addon_batch (the larger). */
  others_cores: number;
}

async function main(): Promise<void> {
  const timing = timingFromEnv();
  const threadsList = intList('HYOKD_BENCH_THREADS', [1, 2]);
  const lanesList = intList('HYOKD_BENCH_LANES', [1, 2, 4, 8]);
  const allCases: CaseName[] = [
    'c_loop',
    'addon_batch',
    'addon_single',
    'addon_session_copy',
    'pkcs11js_async',
  ];
  const cases = (process.env.HYOKD_BENCH_CASES ?? '').split(',').filter(Boolean);
  for (const c of cases)
    if (!allCases.includes(c as CaseName)) throw new Error(`unknown case in HYOKD_BENCH_CASES: ${c}`);
  const wanted = (c: CaseName) => cases.length === 0 || cases.includes(c);
  const quietWait = Number(process.env.HYOKD_BENCH_QUIET_WAIT ?? 0);
  if (!(quietWait >= 0 && quietWait <= 600)) throw new Error('HYOKD_BENCH_QUIET_WAIT must be 0..600 seconds');
  const machine = machineInfo();
  const dir = mkdtempSync(join(tmpdir(), 'hyokd-bench-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  const onSignal = () => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const results = new Map<string, Measurement[]>();
  let bench: Bench & { libraryVersion: string };
  try {
    bench = await provision(dir, timing);
    const jobs: Job[] = [];
    for (const t of threadsList) {
      for (const name of ['c_loop', 'addon_batch', 'addon_single', 'addon_session_copy'] as const) {
        if (wanted(name)) jobs.push({ name, width: t });
      }
    }
    if (wanted('pkcs11js_async')) for (const l of lanesList) jobs.push({ name: 'pkcs11js_async', width: l });
    log(
      `bench:native: ${jobs.length} cases x ${timing.rounds} round(s), ` +
        `${timing.warmup} s warm-up + ${timing.seconds} s each${timing.quick ? ' (QUICK)' : ''}`,
    );
    for (let r = 0; r < timing.rounds; r++) {
      // Alternate the order so slow drift on the machine does not always hit the same cases.
      const order = r % 2 === 0 ? jobs : [...jobs].reverse();
      for (const j of order) {
        await waitForQuiet(0.3, quietWait);
        const m = await runJob(bench, j);
        const list = results.get(key(j)) ?? [];
        list.push(m);
        results.set(key(j), list);
        log(
          `  round ${r + 1} ${key(j).padEnd(22)} ${fmtRate(m.opsPerSec).padStart(8)} ops/s` +
            `  cpu ${coresBusy(m).toFixed(2)} cores, others ${otherCores(m).toFixed(2)}` +
            (m.errors || m.mismatches ? `  ERRORS ${m.errors} MISMATCHES ${m.mismatches}` : ''),
        );
      }
    }
  } finally {
    cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  // --- reduce -----------------------------------------------------------------------
  const bestOf = (k: string) => best((results.get(k) ?? []).map((m) => m.opsPerSec));
  const bestRound = (k: string): Measurement | undefined =>
    (results.get(k) ?? []).reduce<Measurement | undefined>(
      (a, m) => (a && a.opsPerSec >= m.opsPerSec ? a : m),
      undefined,
    );
  // Operations per CPU-second of the measuring process in the best round: unlike
  // throughput, barely moved by other processes taking cores away.
  const perCpu = (k: string) => {
    const m = bestRound(k);
    return m && m.cpuSeconds > 0 ? m.ops / m.cpuSeconds : Number.NaN;
  };
  const othersIn = (k: string) => {
    const m = bestRound(k);
    return m ? otherCores(m) : Number.NaN;
  };
  const roundValue = (k: string, r: number) => results.get(k)?.[r]?.opsPerSec ?? Number.NaN;
  let pkBest = Number.NaN;
  let pkLanes = 0;
  for (const l of lanesList) {
    const v = bestOf(`pkcs11js_async@${l}`);
    if (Number.isFinite(v) && !(v <= pkBest)) {
      pkBest = v;
      pkLanes = l;
    }
  }
  const sets: SetFigures[] = threadsList.map((t) => {
    const c = bestOf(`c_loop@${t}`);
    const batch = bestOf(`addon_batch@${t}`);
    const copy = bestOf(`addon_session_copy@${t}`);
    const perRound = (num: string) =>
      median(
        Array.from(
          { length: timing.rounds },
          (_, r) => roundValue(`${num}@${t}`, r) / roundValue(`c_loop@${t}`, r),
        ),
      );
    return {
      threads: t,
      c_loop: Math.round(c),
      addon_batch: Math.round(batch),
      addon_single: Math.round(bestOf(`addon_single@${t}`)),
      addon_session_copy: Math.round(copy),
      pkcs11js_async: Math.round(pkBest),
      pkcs11js_lanes: pkLanes,
      ratio_vs_c: roundRatio(batch / c),
      ratio_vs_pkcs11js: roundRatio(batch / pkBest),
      ratio_session_copy_vs_c: roundRatio(copy / c),
      round_ratio_vs_c: roundRatio(perRound('addon_batch')),
      round_ratio_session_copy_vs_c: roundRatio(perRound('addon_session_copy')),
      cpu_efficiency_vs_c: roundRatio(perCpu(`addon_batch@${t}`) / perCpu(`c_loop@${t}`)),
      others_cores: Math.round(Math.max(othersIn(`c_loop@${t}`), othersIn(`addon_batch@${t}`)) * 100) / 100,
    };
  });
  // The configuration reported on the JSON line: the thread count where the addon's
  // batch path is fastest (ties go to fewer threads).
  const chosen = sets.reduce((a, s) => (s.addon_batch > a.addon_batch ? s : a));

  let errors = 0;
  let mismatches = 0;
  for (const ms of results.values())
    for (const m of ms) {
      errors += m.errors;
      mismatches += m.mismatches;
    }

  // --- report -----------------------------------------------------------------------
  const out = reportHead(
    'hyokd native engine benchmark: AES-256-GCM decrypt, 32-byte DEK + 16-byte AAD, token-object KEK',
    machine,
    [`module:   ${bench.libraryVersion}`],
  );
  out.push(
    `  one fresh SoftHSM2 token in a temp dir; ${SAMPLE_COUNT} distinct ciphertexts (own IV and AAD), every plaintext checked`,
  );
  out.push(
    `  each case: ${timing.warmup} s warm-up, then ${timing.seconds} s measured; ${timing.rounds} round(s),`,
  );
  out.push(
    '  order reversed every other round; figure per case = BEST round (interference only slows a run)',
  );
  if (quietWait > 0) {
    out.push(
      `  before each case: waited up to ${quietWait} s for the rest of the machine to use < 0.3 cores`,
    );
  }
  out.push('  c_loop: C, one session per thread, C_DecryptInit+C_Decrypt in a loop, own process');
  out.push(
    `  addon_batch: NativeBackend.batch(), ${BATCH_SIZE} items per batch, ${BATCHES_IN_FLIGHT} batches in flight`,
  );
  out.push(`  addon_single: NativeBackend.run(), ${SINGLES_IN_FLIGHT} calls in flight`);
  out.push('  addon_session_copy: addon_batch with sessionObjectCopies: true');
  out.push(
    `  pkcs11js_async: pkcs11js C_DecryptInit (sync) + C_DecryptAsync, one session per lane, lanes ${lanesList.join('/')},` +
      ' CKF_OS_LOCKING_OK, default libuv pool, own process; the best lane count is used for every thread set',
  );
  out.push(
    '  threads = C threads = addon worker sessions; cpu = user+sys of the measuring process / wall time;',
  );
  out.push("  js thread = CPU of the addon process's main thread alone (the rest is its native workers);");
  out.push('  others = cores kept busy by other processes on the machine in the same window (/proc/stat)');
  out.push('');
  const rows: string[][] = [];
  for (const [k, ms] of results) {
    const b = ms.reduce((a, m) => (m.opsPerSec > a.opsPerSec ? m : a));
    rows.push([
      k,
      ...ms.map((m) => fmtRate(m.opsPerSec)),
      fmtRate(b.opsPerSec),
      coresBusy(b).toFixed(2),
      cpuMicrosPerOp(b).toFixed(1),
      jsMicrosPerOp(b),
      ms.map((m) => otherCores(m).toFixed(2)).join('/'),
      String(ms.reduce((a, m) => a + m.errors, 0)),
      String(ms.reduce((a, m) => a + m.mismatches, 0)),
    ]);
  }
  out.push(
    table(
      [
        'case@threads|lanes',
        ...Array.from({ length: timing.rounds }, (_, r) => `round ${r + 1}`),
        'best ops/s',
        'cpu cores',
        'cpu us/op',
        'js thread us/op',
        'others (per round)',
        'errors',
        'mismatch',
      ],
      rows,
    ),
  );
  out.push('');
  out.push(
    table(
      [
        'threads',
        'c_loop',
        'addon_batch',
        'addon_single',
        'session_copy',
        'pkcs11js (lanes)',
        'vs C',
        'vs pkcs11js',
        'copy vs C',
      ],
      sets.map((s) => [
        String(s.threads),
        fmtRate(s.c_loop),
        fmtRate(s.addon_batch),
        fmtRate(s.addon_single),
        fmtRate(s.addon_session_copy),
        s.pkcs11js_lanes ? `${fmtRate(s.pkcs11js_async)} (${s.pkcs11js_lanes})` : '-',
        fmtRatio(s.ratio_vs_c),
        fmtRatio(s.ratio_vs_pkcs11js),
        fmtRatio(s.ratio_session_copy_vs_c),
      ]),
    ),
  );
  out.push('');
  out.push(`reported configuration: ${chosen.threads} thread(s) (the faster addon_batch of the sets above)`);
  out.push(`  ratio_vs_c               ${fmtAgainstTarget(chosen.ratio_vs_c, TARGETS.ratio_vs_c)}`);
  out.push(
    `  ratio_vs_pkcs11js        ${fmtAgainstTarget(chosen.ratio_vs_pkcs11js, TARGETS.ratio_vs_pkcs11js)}`,
  );
  out.push(
    `  ratio_session_copy_vs_c  ${fmtAgainstTarget(chosen.ratio_session_copy_vs_c, TARGETS.ratio_session_copy_vs_c)}`,
  );
  out.push(
    `  same ratios within each round (median): vs C ${fmtRatio(chosen.round_ratio_vs_c)},` +
      ` copy vs C ${fmtRatio(chosen.round_ratio_session_copy_vs_c)}`,
  );
  out.push(
    `  addon_batch vs c_loop in operations per CPU-second: ${fmtRatio(chosen.cpu_efficiency_vs_c)}` +
      ' (the addon process also pays for the JS thread)',
  );
  if (chosen.others_cores > 0.25) {
    out.push(
      `  NOTE: other processes kept ${chosen.others_cores.toFixed(2)} cores busy during these rounds; ` +
        'throughput then reflects scheduler shares as much as engine cost (the C loop has fewer threads to share with)',
    );
  }
  if (errors || mismatches) out.push(`WARNING: ${errors} errors and ${mismatches} wrong plaintexts in total`);
  process.stdout.write(out.join('\n') + '\n');
  const json = {
    threads: chosen.threads,
    c_loop: chosen.c_loop,
    addon_batch: chosen.addon_batch,
    addon_single: chosen.addon_single,
    addon_session_copy: chosen.addon_session_copy,
    pkcs11js_async: chosen.pkcs11js_async,
    ratio_vs_c: chosen.ratio_vs_c,
    ratio_vs_pkcs11js: chosen.ratio_vs_pkcs11js,
    ratio_session_copy_vs_c: chosen.ratio_session_copy_vs_c,
    pkcs11js_lanes: chosen.pkcs11js_lanes,
    reduce: `best of ${timing.rounds}`,
    seconds: timing.seconds,
    errors,
    mismatches,
    sets,
  };
  process.stdout.write(JSON.stringify(json) + '\n');
  if (errors || mismatches) process.exitCode = 1;
}

runBench('bench:native', main);
