// @ts-check
// Which rows of a long table to put in the DOM: those in view plus some either side, so a
// table of 10,000 keys costs the browser about a screenful of rows.

/**
 * @param {{ scrollTop: number, viewport: number, rowHeight: number, total: number, overscan?: number }} v
 * @returns {{ start: number, end: number }} rows [start, end)
 */
export function visibleRange({ scrollTop, viewport, rowHeight, total, overscan = 20 }) {
  if (total <= 0 || rowHeight <= 0) return { start: 0, end: 0 };
  const first = Math.floor(Math.max(0, scrollTop) / rowHeight);
  const count = Math.ceil(Math.max(viewport, rowHeight) / rowHeight) + 1;
  const start = Math.max(0, Math.min(first - overscan, total - 1));
  const end = Math.min(total, first + count + overscan);
  return { start, end: Math.max(start, end) };
}
