// Reads raw TAP (as printed by `tap --reporter=tap`) on stdin and prints one line:
//   N passed, N failed
// Primary source: the counts the tap runner itself prints as its final top-level
// comment, "# { total: T, pass: P, fail: F, ... }" (tap's own assertion totals, the same
// numbers its default reporter shows as "Asserts:"). Fallback when that line is missing
// (runner killed): count the points with tap-parser, leaf assertions only, plus any
// failed subtest whose failure is not explained by a failed child (a crashed file).
// Exit code: 0 when counts were found and total > 0, else 1.
import { Parser } from 'tap-parser';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const text = Buffer.concat(chunks).toString('utf8');

function fromSummary(tap) {
  let last = null;
  for (const line of tap.split('\n')) {
    // Only the process-root TAP writes this comment, unindented, at the very end.
    if (/^# \{ ?total: \d+/.test(line)) last = line;
  }
  if (last === null) return null;
  const num = (k) => Number((new RegExp(`\\b${k}: (\\d+)`).exec(last) ?? [])[1] ?? 0);
  return { total: num('total'), pass: num('pass'), fail: num('fail'), source: 'tap summary' };
}

function fromParser(tap) {
  const totals = { total: 0, pass: 0, fail: 0, source: 'tap-parser count' };
  const watch = (parser) => {
    let child = null;
    parser.on('child', (c) => {
      child = c;
      watch(c);
    });
    parser.on('assert', (res) => {
      const sub = child;
      child = null;
      const failed = !res.ok && !res.todo && !res.skip;
      if (sub !== null) {
        // A subtest's summary point: counted only when it failed on its own.
        if (failed && (sub.results?.fail ?? 0) === 0) {
          totals.total++;
          totals.fail++;
        }
        return;
      }
      totals.total++;
      if (failed) totals.fail++;
      else if (res.ok && !res.todo && !res.skip) totals.pass++;
    });
  };
  const p = new Parser();
  watch(p);
  p.end(tap);
  return totals;
}

const counts = fromSummary(text) ?? fromParser(text);
if (counts.source !== 'tap summary') {
  process.stderr.write(`count-tap: no tap summary line found; counted with tap-parser instead\n`);
}
process.stdout.write(`${counts.pass} passed, ${counts.fail} failed\n`);
process.exitCode = counts.total > 0 ? 0 : 1;
