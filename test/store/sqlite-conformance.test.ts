// The shared MetadataStore suite against the SQLite store: on a real file, and in memory.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { openSqliteStore, storePathIn } from '../../src/store/sqlite-store.js';
import { runStoreConformance } from './conformance.js';

const dir = mkdtempSync(join(tmpdir(), 'hyokd-store-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

t.test('on a file', async (t) => {
  runStoreConformance(t, ({ clock }) => {
    const sub = join(dir, String(n++));
    mkdirSync(sub);
    return openSqliteStore({ path: storePathIn(sub), clock });
  });
});

t.test('in memory', async (t) => {
  runStoreConformance(t, ({ clock }) => openSqliteStore({ path: ':memory:', clock }));
});
