// @ts-check
// The Keys view: every key the viewer may read, windowed, sortable, filtered by the URL.

import { getItems } from "./api.js";
import { badge, keyLink, tags } from "./cells.js";
import { byId, h, replace } from "./dom.js";
import { compactParams, readSort } from "./filters.js";
import { formatCount, formatDateTime, formatRelative } from "./format.js";
import { setTitle } from "./shell.js";
import { nextOrder, sortRows } from "./sort.js";
import { WindowedTable } from "./table.js";

/** @typedef {import("./types.js").InventoryItem} InventoryItem */

/** @type {readonly ("name" | "owner" | "state" | "expiresAt" | "lastUsedAt" | "requests24h" | "alerts")[]} */
const SORTS = ["name", "owner", "state", "expiresAt", "lastUsedAt", "requests24h", "alerts"];
/** @type {Record<string, "asc" | "desc">} */
const FIRST_ORDER = { requests24h: "desc", lastUsedAt: "desc", alerts: "desc" };

/** @type {Record<(typeof SORTS)[number], (k: InventoryItem) => string | number | undefined>} */
const SORT_VALUE = {
  name: (k) => `${k.namespace}/${k.name}`,
  owner: (k) => k.owner,
  state: (k) => k.state,
  expiresAt: (k) => k.expiresAt,
  lastUsedAt: (k) => k.lastUsedAt,
  requests24h: (k) => k.requests24h,
  alerts: (k) => k.firingAlerts.length,
};

/** @param {number | undefined} at @param {number} now @param {string} none */
function when(at, now, none) {
  return at === undefined ? none : h("time", { datetime: new Date(at).toISOString(), title: formatDateTime(at) }, formatRelative(at, now));
}

/** @type {import("./app.js").Mount} */
export function mountKeys(host, { params, filters }) {
  setTitle("Keys");
  const summary = h("p", { id: "summary", class: "summary" });
  const tableHost = h("div", { id: "keys" });
  replace(host, [summary, tableHost]);
  let { sort, order } = readSort(params, SORTS, "name", "asc");
  /** @type {InventoryItem[]} */
  let items = [];
  let now = Date.now();

  /** @type {import("./table.js").Column<InventoryItem>[]} */
  const columns = [
    { label: "Key", sort: "name", cell: (k) => keyLink(k, filters) },
    { label: "State", sort: "state", cell: (k) => badge(k.state) },
    { label: "Owner", sort: "owner", cell: (k) => k.owner },
    { label: "Tags", cell: (k) => tags(k.labels) },
    { label: "Expires", sort: "expiresAt", cell: (k) => when(k.expiresAt, now, "never") },
    { label: "Last used", sort: "lastUsedAt", cell: (k) => when(k.lastUsedAt, now, "never") },
    { label: "Requests (24 h)", sort: "requests24h", numeric: true, cell: (k) => formatCount(k.requests24h) },
    { label: "Firing alerts", sort: "alerts", cell: (k) => k.firingAlerts.map((a) => badge(a)) },
  ];
  const table = new WindowedTable(tableHost, { caption: "Keys", label: "Keys, scrollable", columns });

  /** @param {string} column */
  const onSort = (column) => {
    const c = SORTS.find((s) => s === column);
    if (!c) return;
    order = nextOrder(sort, order, c, FIRST_ORDER[c] ?? "asc");
    sort = c;
    const url = new URL(location.href);
    url.searchParams.set("sort", sort);
    url.searchParams.set("order", order);
    history.pushState(null, "", url);
    render();
    /** @type {HTMLElement | null} */ (document.querySelector(`button[data-sort="${sort}"]`))?.focus();
  };

  function render() {
    table.update(sortRows(items, SORT_VALUE[sort], order), { sort, order, onSort });
    const firing = items.filter((k) => k.firingAlerts.length > 0).length;
    summary.textContent = `${formatCount(items.length)} keys${firing ? `, ${formatCount(firing)} with firing alerts` : ""}.`;
  }

  window.addEventListener("popstate", () => {
    ({ sort, order } = readSort(new URLSearchParams(location.search), SORTS, "name", "asc"));
    render();
  });

  return async () => {
    const next = /** @type {InventoryItem[]} */ (await getItems("inventory", compactParams({ ...filters })));
    // An unchanged inventory (304) is the same array: the namespaces it offers are too.
    const changed = next !== items;
    items = next;
    now = Date.now();
    if (changed) {
      const namespaces = [...new Set(items.map((k) => k.namespace))].sort();
      replace(byId("namespaces"), namespaces.map((n) => h("option", { value: n })));
    }
    render();
  };
}
