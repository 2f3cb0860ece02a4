// Human output for the benchmarks: fixed-width tables, rates and ratios against targets.

/** Operations per second, rounded to a readable figure. */
export function fmtRate(opsPerSec: number): string {
  if (!Number.isFinite(opsPerSec)) return '-';
  return Math.round(opsPerSec).toLocaleString('en-US');
}

export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? r.toFixed(2) : '-';
}

/** `0.93 (target >= 0.90: met)` */
export function fmtAgainstTarget(r: number, target: number): string {
  const verdict = Number.isFinite(r) ? (r >= target ? 'met' : 'MISSED') : 'not measured';
  return `${fmtRatio(r)} (target >= ${target.toFixed(2)}: ${verdict})`;
}

/** Rounds a ratio for the JSON line: three decimals are plenty for a noisy machine. */
export function roundRatio(r: number): number {
  return Number.isFinite(r) ? Math.round(r * 1000) / 1000 : Number.NaN;
}

/** A table with a header row; numeric-looking cells are right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = /^[-+]?[\d,.]+( ?[%x])?$/;
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric.test(c) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
