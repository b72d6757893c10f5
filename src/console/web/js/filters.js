// @ts-check
// The filters every page takes, and their place in the URL: the URL is the state, so a link or
// the back button restores a view exactly.

/**
 * @typedef {object} Filters
 * @property {string} namespace
 * @property {string} owner
 * @property {string} selector label selector: k=v,k2!=v2,k3,!k4
 * @property {string} since RFC 3339, YYYY-MM-DD, or a duration before now (24h, 7d)
 * @property {string} until
 */

/** @type {readonly (keyof Filters)[]} */
export const FILTER_NAMES = ["namespace", "owner", "selector", "since", "until"];

/** @param {URLSearchParams} params @returns {Filters} */
export function readFilters(params) {
  /** @param {string} name */
  const get = (name) => (params.get(name) ?? "").trim();
  return { namespace: get("namespace"), owner: get("owner"), selector: get("selector"), since: get("since"), until: get("until") };
}

/**
 * Query parameters with only the non-empty values (the usage API refuses an empty one), in a
 * stable order.
 * @param {Readonly<Record<string, string | number | undefined>>} values
 * @returns {URLSearchParams}
 */
export function compactParams(values) {
  const out = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined) continue;
    const text = String(value).trim();
    if (text !== "") out.set(name, text);
  }
  return out;
}

/** @typedef {"keys" | "key" | "alerts" | "review"} View */

/** @type {readonly View[]} */
export const VIEWS = ["keys", "key", "alerts", "review"];

/**
 * The view a URL asks for (the Keys page when none or an unknown one).
 * @param {URLSearchParams} params
 * @returns {View}
 */
export function readView(params) {
  const v = params.get("view");
  return VIEWS.find((x) => x === v) ?? "keys";
}

/**
 * A link to a view of the console (one page, `./?view=...`), with the filters (and `extra`)
 * that are set. Relative, so a path prefix in front of the console keeps working.
 * @param {View} view
 * @param {Filters} filters
 * @param {Readonly<Record<string, string | number | undefined>>} [extra]
 */
export function viewHref(view, filters, extra = {}) {
  const q = compactParams({ view: view === "keys" ? undefined : view, ...extra, ...filters }).toString();
  return q === "" ? "./" : `./?${q}`;
}

const DURATION = /^(\d+)(ms|s|m|h|d)$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
/** @type {Record<string, number>} */
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A time filter as ms since the epoch (as the usage API reads it), or undefined when it is not one.
 * @param {string} text
 * @param {number} now
 */
export function parseTime(text, now) {
  const d = DURATION.exec(text);
  if (d) return now - Number(d[1]) * (UNIT_MS[d[2] ?? "ms"] ?? 1);
  if (DATE.test(text)) return Date.parse(`${text}T00:00:00Z`);
  if (RFC3339.test(text)) return Date.parse(text);
  return undefined;
}

/**
 * What is wrong with the filters, for the form to show before asking the API; empty when nothing.
 * @param {Filters} f
 * @param {number} now
 * @returns {string[]}
 */
export function filterProblems(f, now) {
  /** @type {string[]} */
  const problems = [];
  if (f.namespace !== "" && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(f.namespace)) problems.push(`Namespace "${f.namespace}" is not a namespace name.`);
  for (const name of /** @type {const} */ (["since", "until"])) {
    if (f[name] !== "" && parseTime(f[name], now) === undefined) problems.push(`${name === "since" ? "From" : "To"} "${f[name]}" is not a time: give a date (2026-06-01), a duration before now (24h, 7d) or RFC 3339.`);
  }
  const since = parseTime(f.since, now);
  const until = parseTime(f.until, now);
  if (since !== undefined && until !== undefined && since >= until) problems.push("The range ends before it starts.");
  return problems;
}

/**
 * The chart step for a range: hourly up to 7 days, daily beyond.
 * @param {Filters} f
 * @param {number} now
 * @returns {"hour" | "day"}
 */
export function stepFor(f, now) {
  const since = parseTime(f.since, now) ?? now - 86_400_000;
  const until = parseTime(f.until, now) ?? now;
  return until - since > 7 * 86_400_000 ? "day" : "hour";
}

/**
 * The sort a page's URL asks for, limited to the columns it knows.
 * @template {string} C
 * @param {URLSearchParams} params
 * @param {readonly C[]} columns
 * @param {C} fallback
 * @param {"asc" | "desc"} fallbackOrder
 * @returns {{ sort: C, order: "asc" | "desc" }}
 */
export function readSort(params, columns, fallback, fallbackOrder) {
  const s = params.get("sort");
  const sort = columns.find((c) => c === s) ?? fallback;
  const o = params.get("order");
  return { sort, order: o === "asc" || o === "desc" ? o : fallbackOrder };
}
