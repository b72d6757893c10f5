// @ts-check
// Sorting table rows by a column: numbers by value, text by locale, missing values last
// whichever the order; ties keep their order (Array.prototype.sort is stable).

const COLLATOR = new Intl.Collator("en", { numeric: true, sensitivity: "base" });

/**
 * @template T
 * @param {readonly T[]} rows
 * @param {(row: T) => string | number | undefined} value
 * @param {"asc" | "desc"} order
 * @returns {T[]}
 */
export function sortRows(rows, value, order) {
  const sign = order === "asc" ? 1 : -1;
  const keyed = rows.map((row) => ({ row, v: value(row) }));
  keyed.sort((a, b) => {
    if (a.v === undefined || b.v === undefined) return a.v === b.v ? 0 : a.v === undefined ? 1 : -1;
    if (typeof a.v === "number" && typeof b.v === "number") return sign * (a.v - b.v);
    return sign * COLLATOR.compare(String(a.v), String(b.v));
  });
  return keyed.map((k) => k.row);
}

/**
 * The order a header toggles to: the other order on the sorted column, `firstOrder` on another.
 * @param {string} current
 * @param {"asc" | "desc"} order
 * @param {string} column
 * @param {"asc" | "desc"} firstOrder
 * @returns {"asc" | "desc"}
 */
export function nextOrder(current, order, column, firstOrder) {
  if (current !== column) return firstOrder;
  return order === "asc" ? "desc" : "asc";
}
