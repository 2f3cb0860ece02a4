// The C load generator (bench/loadgen/grpc_gen.c) against a real daemon: every kind of
// call counted without errors, the sampled responses decode to the DEKs the envelopes
// hold (so frame indexes and message boundaries are right), the open loop keeps its
// schedule, and bad arguments are refused with exit code 2 before anything connects.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGrpcGen } from '../../bench/lib/c-build.js';
import { startDaemon } from '../../bench/loadgen/daemon.js';
import { decode, hyokTypes } from '../../bench/loadgen/proto.js';
import { runLoad } from '../../bench/loadgen/run.js';
import { loadSpec, type Shape } from '../../bench/loadgen/shape.js';
import type { CallKind } from '../../bench/loadgen/types.js';
import { framesFor, makeWorkload, PATHS, verifyCaptures } from '../../bench/loadgen/workload.js';

const ENVELOPES = 64;
const BATCH = 8;
const timing = { seconds: 0.3, warmup: 0.1, rounds: 1, quick: true };
const shape: Shape = {
  workers: 2,
  connections: 2,
  inflight: 8,
  batchInflight: 2,
  streamWindow: 32,
  deadlineMs: 30_000,
  openTickUs: 1000,
};

// The default generator is the one under test.
delete process.env.HYOKD_BENCH_GENERATOR;
const dir = mkdtempSync(join(tmpdir(), 'hyokd-grpc-gen-test-'));
const binary = buildGrpcGen();
const daemon = await startDaemon(join(dir, 'home'));
t.teardown(async () => {
  await daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});
const workload = await makeWorkload(daemon.target, ENVELOPES);

for (const kind of ['echo', 'unary', 'batch', 'stream'] as CallKind[]) {
  t.test(`${kind}: closed loop, every call OK, sampled responses decode`, async (t) => {
    const frames = framesFor(kind, workload, BATCH);
    const spec = { ...loadSpec(kind, daemon.target, frames, shape, timing), captureEvery: 5, maxCaptures: 8 };
    const r = await runLoad(spec, daemon.pid);
    t.ok(r.calls > 0, `${r.calls} calls (stream: messages) counted`);
    t.same(r.nonOk, {}, 'no non-OK grpc-status');
    t.equal(r.transportErrors, 0, 'no transport errors');
    t.equal(r.abandoned, 0, 'nothing abandoned');
    t.equal(r.failedItems, 0, 'no failed items');
    t.equal(r.okItems, kind === 'batch' ? r.calls * BATCH : r.calls, 'OK items');
    // Streams have no per-call latency (as in the node generator); every other call has one.
    t.equal(r.histogram.count, kind === 'stream' ? 0 : r.calls, 'one latency per counted call');
    t.ok(r.captures.length > 0, `${r.captures.length} captures`);
    if (kind === 'echo') {
      const T = hyokTypes();
      for (const c of r.captures) {
        const req = decode<{ payload: Uint8Array }>(T.EchoRequest, frames[c.frame]!.subarray(5));
        const res = decode<{ payload: Uint8Array }>(T.EchoResponse, c.message);
        t.same(Buffer.from(res.payload), Buffer.from(req.payload), `echo of frame ${c.frame}`);
      }
    } else {
      const v = verifyCaptures(kind, workload, BATCH, r.captures);
      t.ok(v.checked >= r.captures.length, `${v.checked} DEKs checked`);
      t.equal(v.mismatches, 0, 'every DEK as generated');
    }
  });
}

for (const openTickUs of [0, 1000]) {
  t.test(`open loop keeps the rate, measured from the schedule (tick ${openTickUs} us)`, async (t) => {
    const rate = 500;
    const spec = loadSpec(
      'unary',
      daemon.target,
      framesFor('unary', workload, BATCH),
      { ...shape, openTickUs },
      { ...timing, seconds: 0.6 },
      rate,
    );
    const r = await runLoad(spec, daemon.pid);
    t.ok(Math.abs(r.callsPerSec - rate) <= 0.2 * rate, `${r.callsPerSec.toFixed(0)} calls/s at ${rate}/s`);
    t.equal(r.skipped, 0, 'nothing skipped');
    t.equal(r.transportErrors + r.abandoned, 0, 'no errors');
    t.ok(Number.isFinite(r.p99Ms) && r.p99Ms > 0, `p99 ${r.p99Ms.toFixed(2)} ms`);
  });
}

t.test('bad arguments exit 2 with a message; no server exits 1', async (t) => {
  const pem = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text, { mode: 0o600 });
    return p;
  };
  const framesFile = join(dir, 'frames.bin');
  const f = framesFor('echo', workload, BATCH)[0]!;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(f.length);
  writeFileSync(framesFile, Buffer.concat([len, f]), { mode: 0o600 });
  const base = (port: number) => ({
    port: String(port),
    ca: pem('ca.pem', daemon.target.caPem),
    cert: pem('client.pem', daemon.target.certPem),
    key: pem('client.key', daemon.target.keyPem),
    path: PATHS.echo,
    kind: 'echo',
    frames: framesFile,
    'measure-ms': '100',
  });
  const run = (opts: Record<string, string>) => {
    const args = Object.entries(opts).flatMap(([k, v]) => [`--${k}`, v]);
    return spawnSync(binary, args, { input: '', encoding: 'utf8', timeout: 10_000 });
  };
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    [
      'unknown --kind',
      { ...base(daemon.port), kind: 'bogus' },
      /--kind must be echo, unary, batch or stream/,
    ],
    [
      'missing --frames file',
      { ...base(daemon.port), frames: join(dir, 'nope.bin') },
      /--frames .*nope\.bin/,
    ],
    ['--threads 0', { ...base(daemon.port), threads: '0' }, /--threads must be an integer from 1/],
    ['--mode open without --rate', { ...base(daemon.port), mode: 'open' }, /needs --rate/],
    ['unknown option', { ...base(daemon.port), bogus: '1' }, /unknown option "--bogus"/],
    ['--tick-us in closed mode', { ...base(daemon.port), 'tick-us': '1000' }, /apply to --mode open only/],
  ];
  for (const [what, opts, message] of cases) {
    const r = run(opts);
    t.equal(r.status, 2, `${what}: exit 2`);
    t.match(r.stderr, message, `${what}: says why`);
    t.equal(r.stdout, '', `${what}: prints nothing on stdout`);
  }
  // A port nobody listens on: bound, then released.
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const r = run(base(port));
  t.equal(r.status, 1, 'cannot connect: exit 1');
  t.match(r.stderr, /cannot connect to 127\.0\.0\.1/, 'cannot connect: says so');
});

t.test('after its report the generator waits for stdin to end, so its CPU can still be read', async (t) => {
  const file = (name: string, data: string | Buffer) => {
    const p = join(dir, `wait-${name}`);
    writeFileSync(p, data, { mode: 0o600 });
    return p;
  };
  const f = framesFor('echo', workload, BATCH)[0]!;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(f.length);
  const args = Object.entries({
    port: String(daemon.port),
    ca: file('ca.pem', daemon.target.caPem),
    cert: file('client.pem', daemon.target.certPem),
    key: file('client.key', daemon.target.keyPem),
    path: PATHS.echo,
    kind: 'echo',
    frames: file('frames.bin', Buffer.concat([len, f])),
    'measure-ms': '100',
  }).flatMap(([k, v]) => [`--${k}`, v]);
  const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const reported = new Promise<void>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out === 'ready\n') child.stdin.write(`go ${Date.now()}\n`);
      if (out.startsWith('ready\n') && out.endsWith('}\n')) resolve();
    });
  });
  await reported;
  await new Promise((r) => setTimeout(r, 300));
  t.equal(child.exitCode, null, 'still running 300 ms after its report');
  t.ok(existsSync(`/proc/${child.pid}/stat`), 'its /proc entry is there to read');
  child.stdin.end();
  t.equal(await exited, 0, 'exits 0 once stdin ends');
  const report = JSON.parse(out.slice('ready\n'.length)) as { calls: number };
  t.ok(report.calls > 0, 'the report counts calls');
});
