// Reducing repeated measurements of one case to one figure.

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * The best of several rounds. On a shared machine interference only ever slows a run
 * down, so the fastest round is the least disturbed estimate of each case; applied to
 * every case alike it keeps ratios fair.
 */
export function best(xs: number[]): number {
  return xs.length === 0 ? Number.NaN : Math.max(...xs);
}
