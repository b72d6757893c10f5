// Small statistics the benches share.

/**
 * The median of the values that are numbers (NaN left out); of an even count, the lower of the two
 * middle values, so it is always one of the measured runs. NaN when there are none.
 */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? NaN;
}
