// The HSM families read a real engine: a NativeBackend on a SoftHSM2 token, driven
// through successes, a data error, a device error (re-initialization) and a full queue.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createTestToken } from '../helpers/softhsm.js';
import { HsmError } from '../../src/hsm/errors.js';
import type { KeyRef, Op } from '../../src/hsm/types.js';
import { Metrics, readinessFrom, startMetricsServer } from '../../src/metrics/index.js';
import { find, parseExposition, value } from './exposition.js';

const tok = await createTestToken('metrics');
t.teardown(() => tok.cleanup());

t.test('HSM families match the native engine counters', async (t) => {
  const hsm = await tok.open({ sessions: 2, queueCapacity: 64 });
  t.teardown(() => hsm.close());
  const metrics = new Metrics({ defaultMetrics: false, sources: { hsm: () => hsm.counters() } });
  const srv = await startMetricsServer({
    listen: '127.0.0.1:0',
    metrics,
    ready: readinessFrom({ hsm: () => hsm.state(), audit: () => true }),
  });
  t.teardown(() => srv.close());

  const id = randomBytes(16);
  await hsm.run({
    op: 'generateKey',
    keyBits: 256,
    spec: { id, label: 'metrics-kek', token: true, usage: { encrypt: true, decrypt: true } },
  });
  // A token object, so it outlives the re-initialization below.
  const key: KeyRef = { id, cls: 'secret' };
  const sealed = await Promise.all(
    [1, 2, 3, 4, 5].map(() => hsm.run({ op: 'encrypt', key, plaintext: randomBytes(32) })),
  );
  const bad = Buffer.from(sealed[0]!.ciphertext);
  bad[0]! ^= 1;
  const dataErr = await hsm
    .run({ op: 'decrypt', key, iv: sealed[0]!.iv, ciphertext: bad })
    .catch((e: unknown) => e);
  t.ok(dataErr instanceof HsmError);
  // SoftHSM2 reports a GCM tag failure as CKR_GENERAL_ERROR (see SOFTHSM.md).
  const dataCode = (dataErr as HsmError).code;
  t.ok(['CKR_GENERAL_ERROR', 'CKR_ENCRYPTED_DATA_INVALID'].includes(dataCode), dataCode);

  // A device error: the engine re-initializes the module on its supervisor thread.
  hsm.injectFault('CKR_DEVICE_ERROR', 1);
  await hsm.run({ op: 'random', length: 8 }).catch(() => undefined);
  const t0 = Date.now();
  while ((hsm.counters().reinitializations === 0 || hsm.state() !== 'ready') && Date.now() - t0 < 10_000) {
    await new Promise((r) => setTimeout(r, 20));
  }
  t.equal(hsm.state(), 'ready', 'recovered');

  // A full queue: a second batch of 64 while the first waits.
  const ops: Op[] = sealed.flatMap((s) =>
    Array.from({ length: 13 }, () => ({ op: 'decrypt' as const, key, iv: s.iv, ciphertext: s.ciphertext })),
  );
  const first = hsm.batch(ops.slice(0, 64));
  const refused = await hsm.batch(ops.slice(0, 64)).catch((e: unknown) => e);
  await first;
  const queueFull = refused instanceof HsmError && refused.code === 'HYOKD_QUEUE_FULL';
  t.comment(`queue full refusal observed: ${queueFull}`, JSON.stringify(hsm.counters()));

  const c = hsm.counters();
  const res = await fetch(`http://127.0.0.1:${srv.port}/metrics`);
  t.equal(res.status, 200);
  const e = parseExposition(await res.text());

  t.equal(value(e, 'hyokd_hsm_state', { state: 'ready' }), 1);
  t.equal(value(e, 'hyokd_hsm_state', { state: 'recovering' }), 0);
  t.equal(value(e, 'hyokd_hsm_sessions', { state: 'busy' }), c.sessionsBusy);
  t.equal(value(e, 'hyokd_hsm_sessions', { state: 'idle' }), c.sessionsIdle);
  t.equal(c.sessionsBusy + c.sessionsIdle, c.sessionsTotal, 'busy + idle is the pool');
  t.ok(c.sessionsTotal >= 1, 'the pool has sessions');
  t.equal(value(e, 'hyokd_hsm_queue_depth'), c.queueDepth);
  t.equal(value(e, 'hyokd_hsm_queue_capacity'), 64);
  t.ok(value(e, 'hyokd_hsm_operations_total', { op: 'encrypt' }) >= 5, 'five encrypts at least');
  t.equal(value(e, 'hyokd_hsm_operations_total', { op: 'encrypt' }), c.ops['encrypt']);
  t.ok(value(e, 'hyokd_hsm_operations_total', { op: 'decrypt' }) >= 64, 'the first batch ran');
  t.equal(value(e, 'hyokd_hsm_errors_total', { code: dataCode }), 1, 'the tampered decrypt');
  t.ok(value(e, 'hyokd_hsm_errors_total', { code: 'CKR_DEVICE_ERROR' }) >= 1, 'the injected device error');
  for (const [code, n] of Object.entries(c.errors)) {
    t.equal(value(e, 'hyokd_hsm_errors_total', { code }), n, `${code} matches the engine`);
  }
  t.equal(find(e, 'hyokd_hsm_errors_total').length, Object.keys(c.errors).length, 'no extra codes');
  t.equal(value(e, 'hyokd_hsm_reinitializations_total'), c.reinitializations);
  t.ok(c.reinitializations >= 1, 'a re-initialization happened');
  t.equal(value(e, 'hyokd_hsm_session_reopens_total'), c.sessionReopens);
  t.equal(value(e, 'hyokd_hsm_relogins_total'), c.relogins);
  t.equal(value(e, 'hyokd_hsm_handle_resolves_total'), c.handleResolves);
  t.ok(c.handleResolves >= 1, 'the key handle was resolved');
  t.equal(value(e, 'hyokd_hsm_queue_rejections_total'), c.rejectedQueueFull);
  if (queueFull) t.ok(c.rejectedQueueFull >= 1);

  const ready = await fetch(`http://127.0.0.1:${srv.port}/readyz`);
  t.equal(ready.status, 200, 'ready while the engine is');
  await ready.body?.cancel();

  await hsm.close();
  const closed = await fetch(`http://127.0.0.1:${srv.port}/readyz`);
  t.equal(closed.status, 503, 'not ready once closed');
  t.same((await closed.json()) as unknown, { ready: false, reasons: ['hsm: closed'] });
  const after = parseExposition(await metrics.text());
  t.equal(
    value(after, 'hyokd_hsm_state', { state: 'closed' }) +
      value(after, 'hyokd_metrics_source_errors_total', { source: 'hsm' }),
    1,
    'closed, or its counters are unreadable and counted',
  );
  t.equal(value(after, 'hyokd_hsm_state', { state: 'ready' }), 0);
});
