// The daemon's request pipeline without its transport: the real daemon parts (startDaemon
// on a temp HYOKD_HOME: SoftHSM2 token, store, policy, audit writer, metrics) with the
// hyok.v1 handlers called directly, each call given a minimal call object (the dev client
// certificate as its identity), so no TLS, HTTP/2 or protobuf work is in the figures. It
// answers "what does Unwrap cost the JS thread beyond Echo, and where does a call wait",
// which the gRPC benchmark cannot separate from grpc-js. Cases, each closed loop with
// HYOKD_BENCH_INFLIGHT calls in flight (default 64), in rounds of interleaved cases:
//   echo          the Echo handler (pipeline, identity, metrics: the baseline)
//   unwrap        Unwrap with the audit log on (shipped defaults)
//   unwrap_noaudit  the same Unwrap handler built without the audit sink (as with
//                 audit.enabled=false), on the same daemon
// Per case: calls/s, JS-thread CPU per call (/proc/self/task/<tid>/stat), and the mean
// time a call spent in its HSM step and waiting for its audit record.
// Usage: node dist/bench/pipeline.js (knobs: bench/lib/timing.ts). Last line: JSON.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { startDaemon, type Daemon } from '../src/cli/serve.js';
import { loadConfig } from '../src/config/index.js';
import { createLogger } from '../src/log.js';
import { createHyokService } from '../src/server/hyok-service.js';
import type { PipelineDeps } from '../src/server/pipeline.js';
import { fmtRate, fmtRatio, roundRatio, table } from './lib/format.js';
import { machineInfo, reportHead } from './lib/machine.js';
import { mainThreadCpuSeconds } from './lib/procstat.js';
import { median } from './lib/stats.js';
import type { Timing } from './lib/timing.js';
import { benchTiming, intFromEnv } from './loadgen/shape.js';
import { log, runBench } from './lib/script.js';

type Handler = (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => void;
type Case = 'echo' | 'unwrap' | 'unwrap_noaudit';

interface Timed {
  hsmMs: number;
  hsmN: number;
  auditMs: number;
  auditN: number;
}

type Handlers = Record<'Echo' | 'Unwrap' | 'GenerateDataKey', Handler>;

interface Rig {
  daemon: Daemon;
  handlers: Handlers;
  /** The same service without the audit sink. */
  unaudited: Handlers;
  timed: Timed;
}

/** A daemon whose HSM and audit steps are timed, and its hyok.v1 handlers. */
async function rig(home: string): Promise<Rig> {
  const config = loadConfig({
    env: { HYOKD_HOME: home, HYOKD_SERVER_LISTEN: '127.0.0.1:0', HYOKD_METRICS_LISTEN: '127.0.0.1:0' },
  });
  // Level error: the operational log shares stdout, whose last line must stay the JSON.
  const daemon = await startDaemon(config, { log: createLogger({ level: 'error' }) });
  const timed: Timed = { hsmMs: 0, hsmN: 0, auditMs: 0, auditN: 0 };
  const d = daemon.deps;
  const hsm = Object.create(d.hsm) as PipelineDeps['hsm'];
  hsm.batch = async (ops, opts) => {
    const t = performance.now();
    try {
      return await d.hsm.batch(ops, opts);
    } finally {
      timed.hsmMs += performance.now() - t;
      timed.hsmN++;
    }
  };
  const audit: PipelineDeps['audit'] = d.audit && {
    healthy: () => d.audit!.healthy(),
    append: async (ev) => {
      const t = performance.now();
      try {
        return await d.audit!.append(ev);
      } finally {
        timed.auditMs += performance.now() - t;
        timed.auditN++;
      }
    },
  };
  const handlers = createHyokService({ ...d, hsm, audit }) as unknown as Handlers;
  const unaudited = createHyokService({ ...d, hsm, audit: null }) as unknown as Handlers;
  return { daemon, handlers, unaudited, timed };
}

type Caller = (request: unknown) => ServerUnaryCall<unknown, unknown>;
type UnwrapItem = { envelope: Buffer; aad: Buffer };

function callerOf(home: string): Caller {
  const x = new X509Certificate(readFileSync(join(home, 'pki', 'client.pem')));
  const auth = {
    transportSecurityType: 'ssl',
    sslPeerCertificate: { raw: x.raw, fingerprint256: x.fingerprint256 },
  };
  return (request: unknown) =>
    ({
      request,
      getAuthContext: () => auth,
      getPeer: () => 'ipv4:127.0.0.1:40000',
      getDeadline: () => Date.now() + 30_000,
      cancelled: false,
    }) as unknown as ServerUnaryCall<unknown, unknown>;
}

function unary(h: Handler, call: ServerUnaryCall<unknown, unknown>): Promise<unknown> {
  return new Promise((resolve, reject) => h(call, (e, v) => (e ? reject(e) : resolve(v))));
}

interface Result {
  rate: number;
  jsUs: number;
  hsmMs: number;
  auditMs: number;
  errors: number;
}

/** One case, closed loop: `inflight` lanes, a warm-up, then the measured window. */
async function runCase(
  r: Rig,
  k: Case,
  call: Caller,
  items: UnwrapItem[],
  inflight: number,
  timing: Timing,
): Promise<Result> {
  const h = k === 'echo' ? r.handlers.Echo : k === 'unwrap' ? r.handlers.Unwrap : r.unaudited.Unwrap;
  const payload = Buffer.alloc(100, 7);
  let n = 0;
  let errors = 0;
  let next = 0;
  let stop = false;
  // Each lane yields to the event loop between its calls, as network reads would.
  const lane = async () => {
    while (!stop) {
      const it = items[next++ % items.length]!;
      await unary(h, call(k === 'echo' ? { payload } : it)).catch(() => errors++);
      n++;
      await new Promise(setImmediate);
    }
  };
  const lanes = Array.from({ length: inflight }, lane);
  await new Promise((res) => setTimeout(res, timing.warmup * 1000));
  n = 0; // errors keep counting from the start: a failed call is never hidden by the warm-up
  Object.assign(r.timed, { hsmMs: 0, hsmN: 0, auditMs: 0, auditN: 0 });
  const c0 = mainThreadCpuSeconds();
  const t0 = performance.now();
  await new Promise((res) => setTimeout(res, timing.seconds * 1000));
  const c1 = mainThreadCpuSeconds();
  const seconds = (performance.now() - t0) / 1000;
  const done = n;
  const t = { ...r.timed };
  stop = true;
  await Promise.all(lanes);
  return {
    rate: done / seconds,
    jsUs: ((c1 - c0) * 1e6) / done,
    hsmMs: t.hsmN > 0 ? t.hsmMs / t.hsmN : 0,
    auditMs: t.auditN > 0 ? t.auditMs / t.auditN : 0,
    errors,
  };
}

async function main(): Promise<void> {
  const timing = benchTiming();
  // In process there is no per-connection split: all calls in flight, 64 by default.
  const inflight = intFromEnv('HYOKD_BENCH_INFLIGHT', 64, 4096);
  const machine = machineInfo();
  const dir = mkdtempSync(join(tmpdir(), 'hyokd-bench-pipeline-'));
  let r: Rig | undefined;
  try {
    const home = join(dir, 'home');
    r = await rig(home);
    const call = callerOf(home);
    const items: UnwrapItem[] = [];
    for (let i = 0; i < 256; i++) {
      const aad = Buffer.alloc(16, i);
      const g = (await unary(r.handlers.GenerateDataKey, call({ keyName: 'demo', dekLength: 32, aad }))) as {
        envelope: Buffer;
      };
      items.push({ envelope: g.envelope, aad });
    }
    const cases: Case[] = ['echo', 'unwrap', 'unwrap_noaudit'];
    const results = new Map(cases.map((k) => [k, [] as Result[]]));
    log(`bench:pipeline: ${cases.length} cases x ${timing.rounds} round(s), ${inflight} calls in flight`);
    for (let round = 0; round < timing.rounds; round++) {
      for (const k of round % 2 === 0 ? cases : [...cases].reverse()) {
        const res = await runCase(r, k, call, items, inflight, timing);
        results.get(k)!.push(res);
        log(
          `  round ${round + 1} ${k.padEnd(15)} ${fmtRate(res.rate).padStart(8)} calls/s  JS ${res.jsUs.toFixed(1)} us/call` +
            `  hsm ${res.hsmMs.toFixed(2)} ms  audit ${res.auditMs.toFixed(2)} ms  errors ${res.errors}`,
        );
      }
    }

    const med = (k: Case, f: (r: Result) => number) => median((results.get(k) ?? []).map(f));
    const out = reportHead(
      'hyokd request pipeline without transport: hyok.v1 handlers called in process',
      machine,
    );
    out.push(
      '  the real daemon parts (startDaemon, temp HYOKD_HOME, SoftHSM2 token KEK, shipped defaults); handlers',
    );
    out.push('  (unwrap_noaudit: the same handlers built without the audit sink)');
    out.push(
      `  called with a minimal call object; ${inflight} calls in flight, each lane yielding to the event loop`,
    );
    out.push(
      '  between calls; JS-thread CPU from /proc/self/task/<tid>/stat (10 ms ticks: use runs of seconds);',
    );
    out.push('  hsm / audit: mean time a call spent in its HSM step / waiting for its audit record');
    out.push(
      `  ${timing.rounds} round(s) of ${timing.warmup} s warm-up + ${timing.seconds} s, order reversed every other round; figures = medians of rounds`,
    );
    out.push('');
    out.push(
      table(
        ['case', 'calls/s', 'JS us/call', 'hsm ms', 'audit ms', 'errors'],
        cases.map((k) => [
          k,
          fmtRate(med(k, (r) => r.rate)),
          med(k, (r) => r.jsUs).toFixed(1),
          med(k, (r) => r.hsmMs).toFixed(2),
          med(k, (r) => r.auditMs).toFixed(2),
          String((results.get(k) ?? []).reduce((a, r) => a + r.errors, 0)),
        ]),
      ),
    );
    const echoJs = med('echo', (r) => r.jsUs);
    const unwrapJs = med('unwrap', (r) => r.jsUs);
    const noauditJs = med('unwrap_noaudit', (r) => r.jsUs);
    out.push('');
    out.push(`  Unwrap beyond Echo on the JS thread: ${(unwrapJs - echoJs).toFixed(1)} us per call`);
    out.push(`  of which the audit record: ${(unwrapJs - noauditJs).toFixed(1)} us per call`);
    out.push(
      `  audit on / off, calls/s: ${fmtRatio(med('unwrap', (r) => r.rate) / med('unwrap_noaudit', (r) => r.rate))}`,
    );
    out.push('');
    process.stdout.write(out.join('\n') + '\n');
    const errors = [...results.values()].flat().reduce((a, r) => a + r.errors, 0);
    process.stdout.write(
      JSON.stringify({
        inflight,
        echo_rps: Math.round(med('echo', (r) => r.rate)),
        unwrap_rps: Math.round(med('unwrap', (r) => r.rate)),
        unwrap_noaudit_rps: Math.round(med('unwrap_noaudit', (r) => r.rate)),
        echo_js_us: roundRatio(echoJs),
        unwrap_js_us: roundRatio(unwrapJs),
        unwrap_noaudit_js_us: roundRatio(noauditJs),
        unwrap_hsm_ms: roundRatio(med('unwrap', (r) => r.hsmMs)),
        unwrap_audit_ms: roundRatio(med('unwrap', (r) => r.auditMs)),
        errors,
        quick: timing.quick,
      }) + '\n',
    );
    if (errors > 0) process.exitCode = 1;
  } finally {
    await r?.daemon.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

runBench('bench:pipeline', main);
