// A batch of caller records, packed for the audit write helper thread and chained there.
//
// The writer serializes each record body once, on the event loop, into its five
// segments (canonical.ts). To hand a batch to another thread cheaply, the segments
// travel as ONE string: segments separated by U+001F, records by U+001E. Canonical JSON
// never holds a raw control character (JSON.stringify escapes U+0000-U+001F), so the
// separators cannot occur inside a segment. The thread (native/audit_write.cc) then gives
// each record its chain fields as `chainLine` does: the bytes on disk do not depend on
// which side built them.

import type { BodySegments } from './canonical.js';

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
