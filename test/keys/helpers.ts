// Shared set-up for key-layer tests: a real SoftHSM2 token (one per test file), a real
// SQLite store file in a temp dir, and a clock the test can move.
import { HyokError } from '../../src/errors.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestToken, type TestToken } from '../helpers/softhsm.js';
import { openSqliteStore, storePathIn, type SqliteMetadataStore } from '../../src/store/index.js';
import { KeyService, type KeyLifecycleEvent } from '../../src/keys/key-service.js';
import type { NativeBackend } from '../../src/hsm/native-backend.js';

export const DAY = 86_400_000;

export interface KeysFixture {
  tok: TestToken;
  hsm: NativeBackend;
  store: SqliteMetadataStore;
  keys: KeyService;
  events: KeyLifecycleEvent[];
  clock: { now: number };
  dataDir: string;
  close(): Promise<void>;
}

export async function keysFixture(label: string): Promise<KeysFixture> {
  const tok = await createTestToken(label);
  const hsm = await tok.open({ sessions: 2 });
  const dataDir = mkdtempSync(join(tmpdir(), 'hyokd-keys-'));
  const clock = { now: Date.UTC(2026, 0, 1) };
  const store = openSqliteStore({
    path: storePathIn(dataDir),
    synchronous: 'NORMAL',
    clock: () => clock.now,
  });
  const events: KeyLifecycleEvent[] = [];
  const keys = new KeyService({
    hsm,
    store,
    clock: () => clock.now,
    audit: async (e) => {
      events.push(e);
    },
  });
  return {
    tok,
    hsm,
    store,
    keys,
    events,
    clock,
    dataDir,
    async close() {
      await keys.stop();
      await store.close();
      await hsm.close();
      tok.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** How many key objects (any class) carry this hex CKA_ID on the token. */
export async function objectsWithId(hsm: NativeBackend, ckaId: string): Promise<number> {
  let n = 0;
  for (const cls of ['secret', 'private', 'public'] as const) {
    n += (await hsm.run({ op: 'find', cls, id: Buffer.from(ckaId, 'hex') })).handles.length;
  }
  return n;
}

/** The HyokError code a promise rejects with ('no error' when it resolves; other errors rethrown). */
export async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof HyokError) return e.code;
    throw e;
  }
  return 'no error';
}
