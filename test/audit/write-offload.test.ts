// The audit writer's helper thread: batches of caller records (serialized at append)
// chained and written off the event loop, byte for byte as the writer would itself; the
// byte limit of reserved space; events refused at append; I/O errors answered, a dead
// thread failing its jobs, and the writer carrying on without it.
import t, { type Test } from 'tap';
import {
  closeSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { bodySegments, chainLine, GENESIS_PREV, type BodySegments } from '../../src/audit/canonical.js';
import { packBatch } from '../../src/audit/chain-batch.js';
import { addon } from '../../src/hsm/native.js';
import { eventSegments, type RequestEvent } from '../../src/audit/record.js';
import { verifyAuditDir } from '../../src/audit/verify.js';
import { AuditWriteOffload } from '../../src/audit/write-offload.js';
import {
  auditFiles,
  FaultyFs,
  nextHealth,
  openWriter,
  readRecords,
  request,
  tempDir,
  widestCheckpointGap,
} from './fixtures.js';

const TS = '2026-12-01T00:00:00.000Z';

class Tagged {
  constructor(readonly tag: string) {}
}

/** Events of every shape the serializer treats specially: the thread must write what the loop would. */
const eventShapes: object[] = [
  request(0),
  request(1, { context: { reason: 'r', upstreamRequestId: 'u-1' }, details: { envelope: 'ab' } }),
  { type: 'key-job', job: 'rotate', key: { name: 'k', version: 3 }, status: 'succeeded' },
  {
    type: 'reload',
    what: 'policy',
    ok: false,
    code: 'BAD',
    details: {
      when: new Date(0),
      blob: Buffer.from('secret bytes'),
      pin: '1234',
      nested: [1, -0, NaN, null, undefined, 'é\u2028"', [[{ deep: { deeper: { deepest: { x: 1 } } } }]]],
      tagged: new Tagged('t'),
      map: new Map([['a', 1]]),
      big: 10n,
      long: 'x'.repeat(2000),
    },
  },
  {
    ...request(2),
    op: 'BatchUnwrap',
    details: {
      itemCount: 2,
      items: [
        { i: 0, code: 'OK', key: 'k', version: 3, rule: 'r', envelope: 'ab' },
        { i: 1, code: 'NOT_FOUND', key: 'k', version: 3, rule: 'r', envelope: 'cd' },
      ],
    },
  },
  { type: 'quorum', action: 'approved', quorumId: 'q', op: 'DeleteKey', approvals: 1, required: 2 },
];
/** The bodies as the writer hands them over: serialized at append. */
const events: BodySegments[] = eventShapes.map((e) => eventSegments(e));
/** What the loop would write for `bodies`: chainLine's lines, one after the other. */
function expected(bodies: BodySegments[], seq: number, prev: string): { text: string; hash: string } {
  let text = '';
  let hash = prev;
  bodies.forEach((s, i) => {
    const r = chainLine(s, seq + i, TS, hash);
    hash = r.hash;
    text += r.line + '\n';
  });
  return { text, hash };
}
const mixed: BodySegments[] = [
  eventSegments(request(50)),
  ...events,
  bodySegments({ a: 1, i: 2, q: 3, sf: 4, u: 5, type: 'all' }),
  eventSegments(request(51)),
];

t.test('the thread chains and writes at its offset, as the loop would', async (t) => {
  const dir = tempDir(t);
  const o = new AuditWriteOffload();
  t.teardown(() => o.close());
  t.equal(await o.ready(), true, 'ready');
  t.equal(o.usable, true);
  const path = join(dir, 'f');
  // Reserved space, as the writer keeps it: the batches overwrite zeros at their offsets.
  writeFileSync(path, Buffer.alloc(64 * 1024));
  const fd = openSync(path, 'r+');
  t.teardown(() => closeSync(fd));
  const want = expected(mixed, 0, GENESIS_PREV);
  const res = await o.write(fd, mixed, 0, TS, { prev: GENESIS_PREV, position: 0 });
  t.same(res, { kind: 'written', hash: want.hash, bytes: Buffer.byteLength(want.text), position: 0 });
  const next = expected(events.slice(0, 2), 5, want.hash);
  const bytes = Buffer.byteLength(want.text);
  await o.write(fd, events.slice(0, 2), 5, TS, { prev: want.hash, position: bytes });
  const data = readFileSync(path);
  t.equal(data.length, 64 * 1024, 'written inside the reserved space');
  const end = bytes + Buffer.byteLength(next.text);
  t.equal(data.subarray(0, end).toString('utf8'), want.text + next.text, 'byte for byte, each at its offset');
  t.ok(
    data.subarray(end).every((b) => b === 0),
    'the rest still zeros',
  );
  t.equal(o.inflight, 0);
});

t.test('an empty batch writes nothing and keeps the head', async (t) => {
  const { o, path, fd } = await helperAndFile(t);
  const prev = 'c'.repeat(64);
  t.same(await o.write(fd, [], 9, TS, { prev, position: 0 }), {
    kind: 'written',
    hash: prev,
    bytes: 0,
    position: 0,
  });
  t.equal(readFileSync(path).length, 0);
});

t.test('poll() hands over the answers ready now, synchronously; nothing ready is false', async (t) => {
  const dir = tempDir(t);
  const fd = openSync(join(dir, 'f'), 'w');
  t.teardown(() => closeSync(fd));
  const seen: Array<number | string>[] = [];
  const th = new (addon().AuditWriteThread)((flat) => seen.push(flat));
  t.teardown(() => th.close());
  t.equal(th.poll(), false, 'nothing handed over');
  th.write(1, fd, packBatch(events), 0, TS, GENESIS_PREV, 0, -1);
  // Block the event loop (the thread's notification cannot run) until the answer is there.
  const block = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 200 && seen.length === 0; i++) {
    Atomics.wait(block, 0, 0, 10);
    if (th.poll()) break;
  }
  t.equal(seen.length, 1, 'delivered inside poll(), before the loop ran');
  const want = expected(events, 0, GENESIS_PREV);
  t.same(seen[0], [1, 0, want.hash, Buffer.byteLength(want.text), 0]);
  t.equal(th.poll(), false, 'nothing left');
  // The notification that was already on its way finds nothing to deliver.
  await new Promise<void>((resolve) => setTimeout(resolve, 20));
  t.equal(seen.length, 1, 'no answer twice');
});

t.test('the native thread refuses malformed arguments with a TypeError or RangeError', async (t) => {
  const Thread = addon().AuditWriteThread;
  t.throws(() => new (Thread as unknown as new () => unknown)(), TypeError, 'no callback');
  const th = new Thread(() => {});
  t.teardown(() => th.close());
  const w = th.write.bind(th) as (...a: unknown[]) => void;
  const ok: unknown[] = [1, 1, packBatch(events), 0, TS, GENESIS_PREV, 0, -1];
  const bad: Array<[number, unknown, ErrorConstructor]> = [
    [0, -1, RangeError],
    [0, 1.5, RangeError],
    [1, 2 ** 31, RangeError],
    [1, 'x', TypeError],
    [2, Buffer.from('x'), TypeError],
    [3, -1, RangeError],
    [3, 2 ** 60, RangeError],
    [4, 1, TypeError],
    [5, 7, TypeError],
    [6, Number.NaN, RangeError],
    [7, -2, RangeError],
  ];
  for (const [i, v, E] of bad) {
    const args = ok.slice();
    args[i] = v;
    t.throws(() => w(...args), E, `argument ${i} = ${String(v)}`);
  }
  t.throws(() => w(...ok.slice(0, 7)), TypeError, 'too few arguments');
  const hold = th._testHold.bind(th) as (...a: unknown[]) => void;
  t.throws(() => hold(), TypeError, '_testHold without an argument');
  t.throws(() => hold(1), TypeError, '_testHold(1)');
  th.close();
  t.throws(() => w(...ok), /stopped/, 'closed');
});

/** A ready helper and an empty file open for writing, both closed at teardown. */
async function helperAndFile(t: Test): Promise<{ o: AuditWriteOffload; path: string; fd: number }> {
  const o = new AuditWriteOffload();
  t.teardown(() => o.close());
  await o.ready();
  const path = join(tempDir(t), 'f');
  const fd = openSync(path, 'w');
  t.teardown(() => closeSync(fd));
  return { o, path, fd };
}

t.test('a batch larger than its limit is not written', async (t) => {
  const { o, path, fd } = await helperAndFile(t);
  const size = Buffer.byteLength(expected(events, 0, GENESIS_PREV).text);
  t.same(await o.write(fd, events, 0, TS, { prev: GENESIS_PREV, position: 0 }, size - 1), {
    kind: 'over',
    bytes: size,
  });
  t.equal(readFileSync(path).length, 0, 'nothing written');
  t.equal(
    (await o.write(fd, events, 0, TS, { prev: GENESIS_PREV, position: 0 }, size)).kind,
    'written',
    'exactly the limit fits',
  );
});

t.test('an I/O error is an answer with the errno name; the thread stays usable', async (t) => {
  const dir = tempDir(t);
  const o = new AuditWriteOffload();
  t.teardown(() => o.close());
  await o.ready();
  const path = join(dir, 'ro');
  closeSync(openSync(path, 'w'));
  const ro = openSync(path, 'r');
  t.teardown(() => closeSync(ro));
  await t.rejects(o.write(ro, events, 0, TS, { prev: GENESIS_PREV, position: 0 }), {
    code: 'EBADF',
    written: 0,
  });
  t.equal(o.usable, true);
  const fd = openSync(join(dir, 'ok'), 'w');
  t.teardown(() => closeSync(fd));
  const res = await o.write(fd, events, 0, TS, { prev: GENESIS_PREV, position: 0 });
  t.ok(res.kind === 'written' && res.bytes > 0, 'next job fine');
});

t.test('a thread that dies fails its job and refuses new ones', async (t) => {
  // A segment holding a separator cannot come from the serializer; here it makes the
  // thread's unpacking fail, which ends the thread, as any bug there would.
  const segment: BodySegments = ['"a":"\u001f"', '', '', '', '"type":"x"'];
  const record: BodySegments = ['"a":"\u001e"', '', '', '', '"type":"x"'];
  for (const [name, bad] of [
    ['segment separator', [segment]],
    ['record separator', [events[0]!, record]],
  ] as const) {
    const dir = tempDir(t);
    const failures: string[] = [];
    const o = new AuditWriteOffload((why) => failures.push(why));
    await o.ready();
    const fd = openSync(join(dir, 'f'), 'w');
    t.teardown(() => closeSync(fd));
    await t.rejects(o.write(fd, bad, 0, TS, { prev: GENESIS_PREV, position: 0 }), { code: 'WORKER' }, name);
    t.equal(o.usable, false);
    await t.rejects(o.write(fd, events, 0, TS, { prev: GENESIS_PREV, position: 0 }), { code: 'WORKER' });
    t.equal(readFileSync(join(dir, 'f'), 'utf8'), '', 'nothing written');
    await o.close();
    t.same(failures, ['error'], 'reported once, as a failure');
  }
});

t.test('close stops the thread', async (t) => {
  const failures: string[] = [];
  const o = new AuditWriteOffload((why) => failures.push(why));
  await o.ready();
  await o.close();
  t.same(failures, [], 'a close is not a failure');
  t.equal(o.usable, false);
  await t.rejects(o.write(1, events, 0, TS, { prev: GENESIS_PREV, position: 0 }), { code: 'WORKER' });
});

/** Appends `n` records in bursts of `burst`, all at once within a burst. */
async function appendBursts(
  w: Awaited<ReturnType<typeof openWriter>>,
  n: number,
  burst: number,
  from = 0,
): Promise<void> {
  for (let i = from; i < from + n; i += burst) {
    const len = Math.min(burst, from + n - i);
    await Promise.all(Array.from({ length: len }, (_, j) => w.append(request(i + j))));
  }
}

t.test('the default writer hands caller batches to the thread; the chain verifies', async (t) => {
  const dir = tempDir(t);
  const w = await openWriter(dir);
  // The helper takes batches from the start (offloadReady resolves at once for a native thread).
  await appendBursts(w, 40, 20);
  t.equal(await w.offloadReady(), true);
  await appendBursts(w, 360, 40, 40);
  const s = w.stats();
  t.ok(s.offloadedBatches > 0, `offloaded ${s.offloadedBatches} of ${s.batches} batches`);
  await w.close();
  const report = await verifyAuditDir(dir);
  t.equal(report.ok, true, JSON.stringify(report.firstError));
  const reqs = readRecords(dir).filter((r) => r.type === 'request');
  t.equal(reqs.length, 400);
  t.same(
    reqs.map((r) => r.requestId),
    Array.from({ length: 400 }, (_, i) => `req-${i}`),
    'every record, in append order',
  );
  // Checkpoints by count still land between offloaded batches.
  const w2 = await openWriter(tempDir(t), { checkpointEveryRecords: 50 });
  await w2.offloadReady();
  await appendBursts(w2, 300, 30);
  t.ok(w2.stats().offloadedBatches > 0);
  t.ok(w2.stats().checkpoints >= 5, `${w2.stats().checkpoints} checkpoints`);
  await w2.close();
});

t.test(
  'events are serialized at append: a function is dropped, a throwing event is refused alone',
  async (t) => {
    const dir = tempDir(t);
    const w = await openWriter(dir);
    await w.offloadReady();
    await appendBursts(w, 20, 10);
    const before = w.stats().offloadedBatches;
    t.ok(before > 0, 'offloading');
    const fn = (() => 1) as unknown as string;
    /** A record with item rows, as BatchUnwrap makes. */
    const rows = (i: number, row: Record<string, unknown>) =>
      request(i, { details: { items: [row as Record<string, string>], itemCount: 1 } });
    const event = rows(100, { i: 0, code: 'OK', cb: fn });
    const written = w.append(event);
    // Serialized at append: a change made afterwards is not in the record.
    (event.details!.items as Record<string, unknown>[])[0]!.code = 'CHANGED';
    await Promise.all([w.append(request(99)), written, w.append(request(101))]);
    t.ok(w.stats().offloadedBatches > before, 'that batch was offloaded too');
    const rec = readRecords(dir).find((r) => r.requestId === 'req-100')!;
    t.same(rec.details, { itemCount: 1, items: [{ code: 'OK', i: 0 }] }, 'the function is not in the record');
    // A getter that throws: its append is refused at once, the others of its batch are written.
    const throwing = (ev: object): object => {
      const e = { ...ev };
      Object.defineProperty(e, 'peer', {
        enumerable: true,
        get: () => {
          throw new Error('getter');
        },
      });
      return e;
    };
    for (const [name, bad] of [
      ['unary', throwing(request(200))],
      ['with rows', throwing(rows(200, { i: 0, code: 'OK' }))],
    ] as const) {
      const results = await Promise.allSettled([
        w.append(request(199)),
        w.append(bad as RequestEvent),
        w.append(request(201)),
      ]);
      t.same(
        results.map((r) => r.status),
        ['fulfilled', 'rejected', 'fulfilled'],
        name,
      );
    }
    t.ok(w.healthy(), 'still healthy');
    await appendBursts(w, 20, 10, 300);
    t.ok(w.stats().offloadedBatches > before, 'offloading again');
    await w.close();
    const ids = readRecords(dir)
      .filter((r) => r.type === 'request')
      .map((r) => r.requestId);
    t.ok(ids.includes('req-199') && ids.includes('req-201') && !ids.includes('req-200'));
    t.ok((await verifyAuditDir(dir)).ok);
  },
);

t.test(
  'an append collects the answers the thread has ready: earlier appends settle before the loop runs',
  async (t) => {
    const dir = tempDir(t);
    // Plain appends: the file grows when the thread's write lands.
    const w = await openWriter(dir, { reserveBytes: 0 });
    t.teardown(() => w.close());
    t.equal(await w.offloadReady(), true);
    await w.append(request(0));
    const path = join(dir, auditFiles(dir).at(-1)!);
    const before = statSync(path).size;
    let settled = false;
    const first = w.append(request(1)).then(() => {
      settled = true;
    });
    // One loop turn: the writer hands the batch to the thread (its drain runs from setImmediate).
    await new Promise<void>((resolve) => setImmediate(resolve));
    // Then block the loop, so the thread's own notification cannot run, until the write has
    // landed (its answer follows; the loop below waits for that).
    const block = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 300 && statSync(path).size === before; i++) Atomics.wait(block, 0, 0, 10);
    t.ok(statSync(path).size > before, 'the thread wrote the batch');
    t.equal(settled, false, 'not settled while the loop was blocked');
    // Append again, with microtasks only in between (never a loop turn), until the answer
    // is queued on the thread's side: only append's own poll can deliver it here.
    const more: Promise<void>[] = [];
    for (let i = 0; i < 100 && !settled; i++) {
      more.push(w.append(request(2 + i)));
      for (let j = 0; j < 5; j++) await null;
      if (!settled) Atomics.wait(block, 0, 0, 20);
    }
    t.equal(settled, true, 'the earlier append settled inside a later append');
    await Promise.all([first, ...more]);
  },
);

t.test('an injected file system, or offload: false, keeps every batch on the event loop', async (t) => {
  for (const opts of [{ fs: new FaultyFs() }, { offload: false }]) {
    const dir = tempDir(t);
    const w = await openWriter(dir, opts);
    t.equal(await w.offloadReady(), false);
    await appendBursts(w, 100, 20);
    t.equal(w.stats().offloadedBatches, 0, Object.keys(opts)[0]!);
    await w.close();
    t.equal((await verifyAuditDir(dir)).ok, true);
  }
});

/** The descriptor this process holds on `file`. */
function fdOf(file: string): number {
  for (const n of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${n}`) === file) return Number(n);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no descriptor for ${file}`);
}

t.test('a failed offloaded write fails closed, then the writer recovers', async (t) => {
  const dir = tempDir(t);
  const w = await openWriter(dir);
  await w.offloadReady();
  await appendBursts(w, 60, 20);
  t.ok(w.stats().offloadedBatches > 0, 'offloading');
  const before = w.stats().offloadedBatches;
  // Pull the file out from under the thread: its next write gets EBADF.
  closeSync(fdOf(join(dir, auditFiles(dir).at(-1)!)));
  await t.rejects(w.append(request(1000)), { code: 'AUDIT_UNAVAILABLE', kind: 'EBADF' });
  t.equal(w.healthy(), false);
  await t.rejects(w.append(request(1001)), { code: 'AUDIT_UNAVAILABLE' }, 'refused while unhealthy');
  await nextHealth(w);
  t.equal(w.healthy(), true, 'recovered');
  await appendBursts(w, 60, 20);
  t.ok(w.stats().offloadedBatches > before, 'offloading again in the new file');
  await w.close();
  const report = await verifyAuditDir(dir);
  t.equal(report.ok, true, JSON.stringify(report.firstError));
  const types = readRecords(dir).map((r) => r.type);
  t.ok(types.includes('resume'), 'the outage is in the chain');
  t.notOk(
    readRecords(dir).some((r) => r.requestId === 'req-1000' || r.requestId === 'req-1001'),
    'refused records were never written',
  );
});

t.test('a job placed after the previous one is chained and written right behind it', async (t) => {
  const { o, path, fd } = await helperAndFile(t);
  const first = expected(mixed, 0, GENESIS_PREV);
  const second = expected(events, mixed.length, first.hash);
  // Both handed over before either is answered: the second follows whatever the first wrote.
  const [a, b] = await Promise.all([
    o.write(fd, mixed, 0, TS, { prev: GENESIS_PREV, position: 0 }),
    o.write(fd, events, mixed.length, TS, 'after-previous'),
  ]);
  const bytes = Buffer.byteLength(first.text);
  t.same(a, { kind: 'written', hash: first.hash, bytes, position: 0 });
  t.same(b, { kind: 'written', hash: second.hash, bytes: Buffer.byteLength(second.text), position: bytes });
  t.equal(readFileSync(path, 'utf8'), first.text + second.text, 'byte for byte, back to back');
});

t.test('a job after one that was not written is cancelled, not written', async (t) => {
  const { o, path, fd } = await helperAndFile(t);
  const ro = openSync(path, 'r');
  t.teardown(() => closeSync(ro));
  const failed = o.write(ro, events, 0, TS, { prev: GENESIS_PREV, position: 0 });
  const behind = o.write(fd, events, events.length, TS, 'after-previous');
  await t.rejects(failed, { code: 'EBADF', position: 0, written: 0 });
  await t.rejects(behind, { code: 'CANCELLED' });
  // Over its limit: not written either, and the one behind it neither.
  const size = Buffer.byteLength(expected(events, 0, GENESIS_PREV).text);
  const over = o.write(fd, events, 0, TS, { prev: GENESIS_PREV, position: 0 }, size - 1);
  const behindOver = o.write(fd, events, events.length, TS, 'after-previous');
  t.same(await over, { kind: 'over', bytes: size });
  await t.rejects(behindOver, { code: 'CANCELLED' });
  t.equal(readFileSync(path).length, 0, 'nothing written');
  // An explicit place starts again.
  t.equal((await o.write(fd, events, 0, TS, { prev: GENESIS_PREV, position: 0 })).kind, 'written');
});

t.test('cancel: jobs handed over before it that the thread has not begun are not written', async (t) => {
  const { o, path, fd } = await helperAndFile(t);
  // A first batch big enough that the thread is still chaining it when cancel() runs.
  const big = Array.from({ length: 4000 }, (_, i) => eventSegments(request(i)));
  const first = o.write(fd, big, 0, TS, { prev: GENESIS_PREV, position: 0 }).then(
    (r) => r.kind,
    (err: { code?: string }) => err.code,
  );
  const second = o.write(fd, events, big.length, TS, 'after-previous');
  o.cancel();
  await t.rejects(second, { code: 'CANCELLED' });
  const kind = await first;
  const want = expected(big, 0, GENESIS_PREV).text;
  t.ok(kind === 'CANCELLED' || kind === 'written', `first: ${kind}`);
  t.equal(readFileSync(path, 'utf8'), kind === 'written' ? want : '', 'only what was answered written');
  // Jobs handed over after the cancel are written.
  t.equal((await o.write(fd, events, 0, TS, { prev: GENESIS_PREV, position: 0 })).kind, 'written');
});

t.test(
  'the writer hands over the next batch while the helper writes; a failure fails them all',
  async (t) => {
    for (const depth of [1, 2, 4]) {
      const dir = tempDir(t);
      // One record per batch: a burst's drain hands over `depth` batches back to back,
      // before any answer can come (answers come on a later turn of the event loop).
      const w = await openWriter(dir, {
        offloadDepth: depth,
        groupCommitMaxRecords: 1,
        checkpointEveryRecords: 50,
      });
      await w.offloadReady();
      const spread = (from: number, n: number) =>
        Promise.all(
          Array.from({ length: n }, (_, i) =>
            w.append(request(from + i)).then(
              () => 'durable' as const,
              () => 'refused' as const,
            ),
          ),
        );
      const ok = await spread(0, 200);
      t.ok(
        ok.every((r) => r === 'durable'),
        `depth ${depth}: all durable`,
      );
      t.ok(w.stats().offloadedBatches > 1, `depth ${depth}: ${w.stats().offloadedBatches} batches offloaded`);
      const pipelined = w.stats().pipelinedBatches;
      if (depth === 1) t.equal(pipelined, 0, 'depth 1: each batch waits for the answer before it');
      else t.ok(pipelined > 0, `depth ${depth}: ${pipelined} batches handed over behind another`);
      closeSync(fdOf(join(dir, auditFiles(dir).at(-1)!)));
      const failed = await spread(1000, 50);
      t.ok(
        failed.every((r) => r === 'refused'),
        `depth ${depth}: every append behind the failure is refused`,
      );
      await nextHealth(w);
      await spread(2000, 20);
      await w.close();
      const report = await verifyAuditDir(dir);
      t.equal(report.ok, true, JSON.stringify(report.firstError));
      // Checkpoints by count keep their spacing however many batches are with the helper.
      const widest = widestCheckpointGap(dir);
      t.ok(widest <= 50, `depth ${depth}: at most 50 requests between checkpoints (${widest})`);
      const ids = readRecords(dir).map((r) => r.requestId);
      t.equal(ids.filter((id) => typeof id === 'string' && /^req-\d{1,3}$/.test(id)).length, 200);
      t.notOk(
        ids.some((id) => typeof id === 'string' && /^req-1\d{3}$/.test(id)),
        `depth ${depth}: refused records never written`,
      );
      t.equal(ids.filter((id) => typeof id === 'string' && /^req-2\d{3}$/.test(id)).length, 20);
    }
  },
);

t.test(
  'a hung offloaded write, with batches handed over behind it, fails them all within writeTimeoutMs; recovery waits for it',
  async (t) => {
    const dir = tempDir(t);
    const offload = new AuditWriteOffload();
    // One record per batch and four batches with the helper: the hung one and three behind it.
    const w = await openWriter(dir, {
      offload,
      offloadDepth: 4,
      groupCommitMaxRecords: 1,
      writeTimeoutMs: 200,
      probeIntervalMs: 20,
    });
    t.teardown(() => {
      offload.hold(false);
      return w.close();
    });
    t.equal(await w.offloadReady(), true);
    await Promise.all(Array.from({ length: 20 }, (_, i) => w.append(request(i))));
    const pipelinedBefore = w.stats().pipelinedBatches;

    offload.hold(true);
    const started = Date.now();
    const settledAt: number[] = [];
    const outcomes = Array.from({ length: 40 }, (_, i) =>
      w
        .append(request(1000 + i))
        .then(
          () => 'durable',
          (err: { code?: string; kind?: string }) => `${err.code}/${err.kind}`,
        )
        .finally(() => settledAt.push(Date.now() - started)),
    );
    for (let i = 0; i < 200 && !offload.holding; i++) await new Promise((r) => setTimeout(r, 5));
    t.equal(offload.holding, true, 'the helper is stuck in a write');
    const results = await Promise.all(outcomes);
    t.same(new Set(results), new Set(['AUDIT_UNAVAILABLE/TIMEOUT']), 'every append refused, as a timeout');
    const last = Math.max(...settledAt);
    t.ok(last >= 190 && last < 2000, `all refused ${last} ms after the disk hung (writeTimeoutMs 200)`);
    t.ok(w.stats().pipelinedBatches > pipelinedBefore, 'batches were handed over behind the hung one');
    t.equal(w.healthy(), false);
    t.equal(w.stats().lastErrorKind, 'TIMEOUT');

    await new Promise((r) => setTimeout(r, 300));
    t.equal(w.healthy(), false, 'no resume while the hung write may still land');
    t.equal(offload.holding, true);
    offload.hold(false);
    await nextHealth(w);
    t.equal(w.healthy(), true, 'healthy once the hung write returned');
    await Promise.all(Array.from({ length: 20 }, (_, i) => w.append(request(2000 + i))));
    await w.close();

    const report = await verifyAuditDir(dir);
    t.equal(report.ok, true, JSON.stringify(report.firstError));
    const records = readRecords(dir);
    const ids = records.map((r) => r.requestId);
    const late = ids.filter((id) => typeof id === 'string' && /^req-1\d{3}$/.test(id));
    // The hung batch (one record) may land when its write returns; the caller was refused, and
    // over-recording is the safe side. Nothing handed over behind it reaches the file.
    t.ok(late.length <= 1, `refused records on disk: ${late.join(', ') || 'none'}`);
    t.equal(
      ids.filter((id) => typeof id === 'string' && /^req-2\d{3}$/.test(id)).length,
      20,
      'service resumed',
    );
    t.ok(
      records.some((r) => r.type === 'resume'),
      'a resume marker declares the gap',
    );
  },
);
