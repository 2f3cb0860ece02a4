import { randomBytes } from 'node:crypto';

/**
 * A random 128-bit certificate serial in hex. RFC 5280 wants a positive integer of at
 * most 20 octets: the top bit is cleared (positive in DER) and the top byte kept non-zero
 * so the encoding length is stable.
 */
export function randomSerialHex(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}
