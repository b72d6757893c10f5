// @ts-check
// Cells the views share: a key's link, a state badge, label tags, the alerts table.

import { h } from "./dom.js";
import { viewHref } from "./filters.js";
import { formatDateTime, formatLabels, formatRelative } from "./format.js";
import { stateClass } from "./state.js";
import { simpleTable } from "./table.js";

/** @typedef {import("./types.js").AlertRecord} AlertRecord */
/** @typedef {import("./filters.js").Filters} Filters */

/**
 * The link to a key's page, keeping the filters.
 * @param {{ namespace: string, name: string }} k
 * @param {Filters} filters
 */
export function keyLink(k, filters) {
  const ref = `${k.namespace}/${k.name}`;
  return h("a", { href: viewHref("key", filters, { key: ref }) }, ref);
}

/** A state as a word in a coloured badge. @param {string} state */
export function badge(state) {
  return h("span", { class: `badge ${stateClass(state)}` }, state);
}

/** @param {Readonly<Record<string, string>>} labels */
export function tags(labels) {
  return formatLabels(labels).map((t) => h("span", { class: "tag" }, t));
}

/**
 * @param {readonly AlertRecord[]} alerts
 * @param {{ caption: string, empty: string, now: number, filters?: Filters, id?: string }} o with `filters`: a column links each alert's key
 */
export function alertsTable(alerts, o) {
  /** @type {import("./table.js").Column<AlertRecord>[]} */
  const columns = [{ label: "Alert", cell: (a) => a.alert }];
  const filters = o.filters;
  if (filters) columns.push({ label: "Key", cell: (a) => keyLink(a, filters) }, { label: "Owner", cell: (a) => a.owner });
  columns.push(
    { label: "State", cell: (a) => badge(a.state) },
    { label: "Started", cell: (a) => `${formatDateTime(a.startsAt)} (${formatRelative(a.startsAt, o.now)})` },
    { label: "Ended", cell: (a) => (a.endsAt === undefined ? "—" : formatDateTime(a.endsAt)) },
    { label: "Summary", cell: (a) => a.summary },
  );
  return simpleTable({ caption: o.caption, empty: o.empty, rows: alerts, columns, ...(o.id ? { id: o.id } : {}) });
}
