// A batch of caller records, packed for the audit write worker and chained there.
//
// The writer serializes each record body once, on the event loop, into its five
// segments (canonical.ts). To hand a batch to another thread cheaply, the segments
// travel as ONE string: segments separated by U+001F, records by U+001E. Canonical JSON
// never holds a raw control character (JSON.stringify escapes U+0000-U+001F), so the
// separators cannot occur inside a segment. The worker then gives each record its
// chain fields with the same `chainLine` the writer uses itself: the bytes on disk do
// not depend on which thread built them.

import { chainLine, type BodySegments } from './canonical.js';

const SEGMENT_SEP = '\u001f';
const RECORD_SEP = '\u001e';

/** The segments of `bodies`, as one string. */
export function packBatch(bodies: readonly BodySegments[]): string {
  let out = '';
  for (let i = 0; i < bodies.length; i++) {
    const s = bodies[i]!;
    const rec = s[0] + SEGMENT_SEP + s[1] + SEGMENT_SEP + s[2] + SEGMENT_SEP + s[3] + SEGMENT_SEP + s[4];
    out = i === 0 ? rec : out + RECORD_SEP + rec;
  }
  return out;
}

/** The bodies of a packed batch; throws TypeError if `packed` is not one packBatch made. */
export function unpackBatch(packed: string): BodySegments[] {
  if (packed === '') return [];
  return packed.split(RECORD_SEP).map((rec) => {
    const s = rec.split(SEGMENT_SEP);
    if (s.length !== 5) throw new TypeError('audit: malformed packed batch');
    return s as BodySegments;
  });
}

export interface ChainedBatch {
  /** The records' lines, each ending in a newline: what goes to the file. */
  text: string;
  /** The hash of the last record (the new head). */
  hash: string;
}

/** Chains `bodies` as records seq, seq+1, … after `prev`, all stamped `ts`. */
export function chainBatch(
  bodies: readonly BodySegments[],
  seq: number,
  ts: string,
  prev: string,
): ChainedBatch {
  let text = '';
  let hash = prev;
  for (let i = 0; i < bodies.length; i++) {
    const r = chainLine(bodies[i]!, seq + i, ts, hash);
    hash = r.hash;
    text += r.line + '\n';
  }
  return { text, hash };
}
