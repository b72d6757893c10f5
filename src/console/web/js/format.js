// @ts-check
// How the console writes numbers, times and durations. Times are UTC, as the usage API counts
// days in UTC.

const NUMBER = new Intl.NumberFormat("en-US");

/** @param {number} n */
export function formatCount(n) {
  return NUMBER.format(n);
}

/** @param {number} n two digits */
const two = (n) => String(n).padStart(2, "0");

/**
 * `2026-12-01 15:07 UTC`, or "—" when there is no time.
 * @param {number | undefined} ms
 */
export function formatDateTime(ms) {
  if (ms === undefined) return "—";
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())} UTC`;
}

/**
 * `HH:MM:SS` in the viewer's own clock, for "updated 15:07:12".
 * @param {number} ms
 */
export function formatClock(ms) {
  const d = new Date(ms);
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/**
 * How long ago or ahead `ms` is from `now`, in the largest whole unit: `3 h ago`, `in 12 d`.
 * @param {number | undefined} ms
 * @param {number} now
 */
export function formatRelative(ms, now) {
  if (ms === undefined) return "never";
  const delta = ms - now;
  const abs = Math.abs(delta);
  /** @type {[number, string][]} */
  const units = [
    [86_400_000, "d"],
    [3_600_000, "h"],
    [60_000, "min"],
  ];
  let text = "just now";
  for (const [size, unit] of units) {
    if (abs >= size) {
      text = `${Math.floor(abs / size)} ${unit}`;
      break;
    }
  }
  if (text === "just now") return text;
  return delta < 0 ? `${text} ago` : `in ${text}`;
}

/**
 * A latency in microseconds: `850 µs`, `1.2 ms`, `2.50 s`; "—" when there is none.
 * @param {number | undefined} micros
 */
export function formatMicros(micros) {
  if (micros === undefined || !Number.isFinite(micros)) return "—";
  if (micros < 1000) return `${Math.round(micros)} µs`;
  if (micros < 1_000_000) return `${(micros / 1000).toFixed(micros < 10_000 ? 1 : 0)} ms`;
  return `${(micros / 1_000_000).toFixed(2)} s`;
}

/**
 * Labels as `k=v` terms, sorted by name.
 * @param {Readonly<Record<string, string>>} labels
 */
export function formatLabels(labels) {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k] ?? ""}`);
}
