// The HSM backend conformance suite, run against the real engine on SoftHSM2 (the fake
// backend runs the same suite in fake-backend.test.ts).
import t from 'tap';
import { createTestToken } from '../helpers/softhsm.js';
import { hsmConformance } from './conformance.js';
import type { HsmBackend } from '../../src/hsm/types.js';

const tok = await createTestToken('conformance');
const opened: HsmBackend[] = [];
t.teardown(async () => {
  for (const h of opened) await h.close();
  tok.cleanup();
});

t.test('conformance: native backend on SoftHSM2', (t) =>
  hsmConformance(t, async () => {
    const h = await tok.open({ sessions: 2 });
    opened.push(h);
    return h;
  }),
);

t.test('conformance: native backend with session-object copies', (t) =>
  hsmConformance(t, async () => {
    const h = await tok.open({ sessions: 2, sessionObjectCopies: true });
    opened.push(h);
    return h;
  }),
);
