// The bounded memo every per-process cache uses (src/memo.ts): it never holds more than
// its bound, starts again empty when full, and set() hands back what it stored.
import t from 'tap';
import { Memo } from '../src/memo.js';

t.test('bounded: the entry past the bound starts it again', async (t) => {
  const m = new Memo<string, number>(3);
  for (const [i, k] of ['a', 'b', 'c'].entries()) t.equal(m.set(k, i), i, 'set returns the value');
  t.equal(m.get('a'), 0);
  t.equal(m.get('c'), 2);
  m.set('d', 3); // a fourth key: emptied first, then stored
  t.equal(m.get('a'), undefined, 'what was there is gone');
  t.equal(m.get('c'), undefined);
  t.equal(m.get('d'), 3, 'the new entry is kept');
  m.set('d', 4);
  t.equal(m.get('d'), 4, 'an existing key is overwritten');
  m.clear();
  t.equal(m.get('d'), undefined, 'clear empties it');
});
