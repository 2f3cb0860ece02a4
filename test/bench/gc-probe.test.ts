// The open-loop report names the daemon's mark-compacts per round (bench/loadgen/gc-probe.ts),
// read from the daemon's own /metrics. Checked against hyokd's real metrics server (prom-client's
// default nodejs_* families) in this process: a window without a full GC reads 0, a window
// with forced ones reads them, and no endpoint (or a dead one) reads null, not 0.
import t from 'tap';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Metrics, startMetricsServer, readinessFrom } from '../../src/metrics/index.js';
import { GcProbe, fmtGc } from '../../bench/loadgen/gc-probe.js';

// A full (mark-compact) collection on demand, without starting node with --expose-gc.
setFlagsFromString('--expose-gc');
const fullGc = runInNewContext('gc') as () => void;

const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

t.test('mark-compacts inside the window are counted, and only those', async (t) => {
  const metrics = new Metrics();
  const server = await startMetricsServer({
    listen: '127.0.0.1:0',
    metrics,
    ready: readinessFrom({ hsm: () => 'ready', audit: () => true }),
  });
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${server.port}/metrics`;
  const probe = new GcProbe(() => url);

  fullGc(); // one before any window: a window must not count it
  await settle();
  const quiet = await probe.measure(async () => {
    await settle();
    return 'quiet';
  });
  t.equal(quiet.result, 'quiet', 'the window’s own result comes back');
  t.ok(quiet.gc, 'read');
  t.equal(quiet.gc!.majorGcs, 0, 'no mark-compact in a window without one');
  t.ok(quiet.gc!.loopLagMaxMs >= 0, 'loop lag read');

  const busy = await probe.measure(async () => {
    // One per turn: prom-client sees GCs through a PerformanceObserver, a little later.
    for (let i = 0; i < 3; i++) {
      fullGc();
      await settle();
    }
  });
  t.ok(busy.gc, 'read');
  t.equal(busy.gc!.majorGcs, 3, 'three forced mark-compacts');
  t.ok(busy.gc!.majorGcMs > 0, 'their pauses add up to more than nothing');
  t.match(fmtGc(busy.gc), /mark-compacts 3 \(\d+ ms\)\s+loop lag max \d+ ms/);
});

t.test('no metrics endpoint: null, not zero', async (t) => {
  const none = await new GcProbe(() => undefined).measure(async () => 1);
  t.equal(none.result, 1);
  t.equal(none.gc, null);
  t.equal(fmtGc(none.gc), '');
  // A port nothing listens on (the server above is closed, its port free again).
  const metrics = new Metrics({ defaultMetrics: false });
  const s = await startMetricsServer({
    listen: '127.0.0.1:0',
    metrics,
    ready: readinessFrom({ hsm: () => 'ready', audit: () => true }),
  });
  const port = s.port;
  await s.close();
  const dead = await new GcProbe(() => `http://127.0.0.1:${port}/metrics`).measure(async () => 2);
  t.equal(dead.result, 2);
  t.equal(dead.gc, null, 'a failed scrape is not a quiet window');
});
