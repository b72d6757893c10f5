// @ts-check
// The console's colours and the WCAG 2 contrast they must keep: text pairs (the custom
// properties of console.css) at least 4.5:1, chart lines against the page at least 3:1 (a
// graphical object, WCAG 1.4.11). A unit test computes every pair.

/** Foreground/background custom-property pairs of console.css that carry text. */
export const TEXT_PAIRS = /** @type {const} */ ([
  ["--fg", "--bg"],
  ["--muted", "--bg"],
  ["--link", "--bg"],
  ["--fg", "--panel"],
  ["--muted", "--panel"],
  ["--link", "--panel"],
  ["--header-fg", "--header-bg"],
  ["--error-fg", "--error-bg"],
  ["--ok-fg", "--ok-bg"],
  ["--warn-fg", "--warn-bg"],
  ["--bad-fg", "--bad-bg"],
  ["--idle-fg", "--idle-bg"],
  ["--info-fg", "--info-bg"],
]);

/** Non-text pairs (focus ring, borders of controls) that need 3:1. */
export const UI_PAIRS = /** @type {const} */ ([
  ["--focus", "--bg"],
  ["--focus", "--panel"],
  ["--control-border", "--bg"],
]);

/** Chart series colours, drawn on --bg. */
export const SERIES = {
  allowed: "#1a7f37",
  denied: "#cf222e",
  status401: "#9a6700",
  status403: "#cf222e",
  status429: "#8250df",
  upstream2xx: "#1a7f37",
  upstream3xx: "#0969da",
  upstream4xx: "#bc4c00",
  upstream5xx: "#a40e26",
  checkP50: "#0969da",
  checkAvg: "#8250df",
  upstreamAvg: "#bc4c00",
};

/** The page background the charts are drawn on (console.css --bg). */
export const CHART_BG = "#ffffff";
/** Axis and grid text of the charts (console.css --muted). */
export const CHART_TEXT = "#57606a";
export const CHART_GRID = "#d0d7de";

/**
 * Relative luminance of an sRGB colour `#rrggbb` (WCAG 2).
 * @param {string} hex
 */
export function luminance(hex) {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) throw new Error(`not a #rrggbb colour: ${hex}`);
  const [r, g, b] = [m[1], m[2], m[3]].map((h) => {
    const c = parseInt(h ?? "0", 16) / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * (r ?? 0) + 0.7152 * (g ?? 0) + 0.0722 * (b ?? 0);
}

/**
 * WCAG 2 contrast ratio of two colours, 1 to 21.
 * @param {string} a
 * @param {string} b
 */
export function contrastRatio(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return ((hi ?? 0) + 0.05) / ((lo ?? 0) + 0.05);
}
