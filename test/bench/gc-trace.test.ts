// bench:gc reads V8's own --trace-gc-nvp lines (bench/loadgen/gc-trace.ts). Checked on the
// output of a real node child: a child that keeps what it allocates across scavenges shows
// promoted bytes, one that drops it promptly shows far fewer, and forced full collections
// are counted as mark-compacts; lines split across chunks are read whole.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { GcTrace, parseNvpLine, type GcTotals } from '../../bench/loadgen/gc-trace.js';

/** stdout of a node child with --trace-gc-nvp running `body`. */
function traced(body: string): string {
  const r = spawnSync(
    process.execPath,
    ['--trace-gc-nvp', '--expose-gc', '--max-semi-space-size=1', '-e', body],
    {
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return r.stdout;
}

/** The totals of `out` fed whole into a fresh GcTrace's window. */
async function read(out: string): Promise<GcTotals> {
  const trace = new GcTrace();
  return (await trace.window(async () => trace.push(out), 0)).gc;
}

// Allocates ~40 MB in small objects; `keep` of every 1,000 batches stay reachable to the end.
const program = (keep: number, fullGcs: number) => `
  const kept = [];
  for (let i = 0; i < 20000; i++) {
    const batch = [];
    for (let j = 0; j < 50; j++) batch.push({ i, j, s: 'x' + j });
    if (i % 1000 < ${keep}) kept.push(batch);
  }
  for (let k = 0; k < ${fullGcs}; k++) gc();
  console.log('kept', kept.length);
`;

t.test('promotion, scavenges and forced mark-compacts from a real child', async (t) => {
  const k = await read(traced(program(500, 2)));
  const d = await read(traced(program(0, 3)));
  t.ok(k.scavenges > 5 && d.scavenges > 5, `scavenges read (${k.scavenges}, ${d.scavenges})`);
  t.ok(k.promotedBytes > 4 * 1024 * 1024, `keeping half promotes megabytes (${k.promotedBytes} B)`);
  t.ok(d.promotedBytes * 10 < k.promotedBytes, `dropping promptly promotes far less (${d.promotedBytes} B)`);
  t.ok(k.markCompacts >= 2, `forced full GCs counted (${k.markCompacts})`);
  t.ok(d.markCompacts >= 3, `forced full GCs counted (${d.markCompacts})`);
  t.ok(k.markCompactMaxMs > 0 && k.markCompactMs >= k.markCompactMaxMs, 'pauses read');
  t.ok(k.evacuateMs <= k.markCompactMs, 'evacuation is part of the pause');
});

t.test('lines split across chunks, other output and windows', async (t) => {
  const out = traced(program(500, 1));
  const trace = new GcTrace();
  const { gc } = await trace.window(async () => {
    // Odd-sized chunks with unrelated lines in between, as a pipe may deliver them.
    const noisy = `serving on 127.0.0.1:1234\n${out}not a gc=line\n`;
    for (let i = 0; i < noisy.length; i += 97) trace.push(noisy.slice(i, i + 97));
  }, 0);
  t.same(gc, await read(out), 'chunked feed reads the same as the whole text');
  const second = await trace.window(async () => undefined, 0);
  t.equal(second.gc.scavenges, 0, 'a later window without collections reads none');
  t.equal(second.gc.markCompactMaxMs, 0, 'and no pause');
  t.equal(parseNvpLine('kept 10'), null, 'program output is not a collection');
  t.equal(parseNvpLine('gc=s reduce_memory=0'), null, 'a line without a pause is not counted');
});
