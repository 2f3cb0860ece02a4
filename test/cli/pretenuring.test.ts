// The daemon turns V8's allocation-site pretenuring off (src/cli/pretenuring.ts), unless
// started with the flag explicitly. V8 itself says which literals it decided to allocate
// old (--trace-pretenuring-statistics), so a child that keeps every object of one literal
// alive shows the decisions with V8's default and none after disablePretenuring(). The
// child loads the built module (dist/, which `npm test` builds first): a TypeScript
// loader would allocate, and take decisions of its own, before the call.
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { disablePretenuring, PRETENURING_FLAG } from '../../src/cli/pretenuring.js';

const root = join(import.meta.dirname, '..', '..');
const MODULE = join(root, 'dist', 'src', 'cli', 'pretenuring.js');
const SOURCE = join(root, 'src', 'cli', 'pretenuring.ts');

function assertBuilt(): void {
  if (!existsSync(MODULE) || lstatSync(MODULE).mtimeMs < lstatSync(SOURCE).mtimeMs) {
    throw new Error(`${MODULE} is missing or older than its source: run npm run build:ts (npm test does)`);
  }
}

/** A child that calls disablePretenuring() then keeps 800k literal objects; its "=> tenure" decisions. */
function tenureDecisions(extraFlags: string[]): { decisions: number; lines: number; disabled: string } {
  assertBuilt();
  const script = `
    const { disablePretenuring } = await import(${JSON.stringify(MODULE)});
    const disabled = disablePretenuring();
    const keep = [];
    const make = (i) => ({ i, pair: [i, i + 1] });
    for (let i = 0; i < 800_000; i++) keep.push(make(i));
    process.stderr.write('disabled=' + disabled + ' kept=' + keep.length + '\\n');
  `;
  const r = spawnSync(
    process.execPath,
    // V8 turns "maybe tenure" into "tenure" only at a scavenge of a young generation at its
    // largest: a 1 MB cap gets there at once, whatever the machine's speed.
    [
      '--trace-pretenuring-statistics',
      '--max-semi-space-size=1',
      ...extraFlags,
      '--input-type=module',
      '-e',
      script,
    ],
    // Without tap's NODE_OPTIONS (its process-info hook would load, and allocate, first).
    { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '' } },
  );
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return {
    decisions: (r.stdout.match(/=> tenure/g) ?? []).length,
    lines: (r.stdout.match(/pretenuring:/g) ?? []).length,
    disabled: /disabled=(\w+)/.exec(r.stderr)?.[1] ?? '?',
  };
}

t.test('off by default: V8 takes no pretenuring decision', async (t) => {
  const r = tenureDecisions([]);
  t.equal(r.disabled, 'true');
  t.equal(r.decisions, 0);
});

t.test(`${PRETENURING_FLAG} given explicitly keeps V8's default, which does pretenure`, async (t) => {
  const r = tenureDecisions([PRETENURING_FLAG]);
  t.equal(r.disabled, 'false');
  t.ok(r.decisions > 0, `V8 pretenured ${r.decisions} site(s) (${r.lines} statistics lines)`);
});

t.test('the decision reads only the explicit flag', async (t) => {
  t.equal(disablePretenuring(['--max-old-space-size=100', PRETENURING_FLAG]), false);
  t.equal(disablePretenuring(['--no-allocation-site-pretenuring']), true);
  t.equal(disablePretenuring([]), true);
});
