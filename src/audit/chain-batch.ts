// A batch of caller records on its way to the audit write worker, and chained there.
//
// A record the loop has serialized travels as ONE string: its five segments
// (canonical.ts) separated by U+001F. Canonical JSON never holds a raw control character
// (JSON.stringify escapes U+0000-U+001F), so the separator cannot occur inside a
// segment. The worker gives each record its chain fields with the same `chainLine` the
// writer uses itself: the bytes on disk do not depend on which thread built them.

import { chainLine, type BodySegments } from './canonical.js';

const SEGMENT_SEP = '\u001f';

/** One record's segments as one string. */
export function packBody(s: BodySegments): string {
  return s[0] + SEGMENT_SEP + s[1] + SEGMENT_SEP + s[2] + SEGMENT_SEP + s[3] + SEGMENT_SEP + s[4];
}

/** The segments of a packBody string; throws TypeError for anything packBody did not make. */
export function unpackBody(packed: string): BodySegments {
  const s = packed.split(SEGMENT_SEP);
  if (s.length !== 5) throw new TypeError('audit: malformed packed record');
  return s as BodySegments;
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
