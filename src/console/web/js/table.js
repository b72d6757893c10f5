// @ts-check
// Tables: a plain one for short lists, and a windowed one for the keys (only the rows in view
// are in the DOM). Sortable headers are buttons; the sorted one carries aria-sort.

import { append, h } from "./dom.js";
import { visibleRange } from "./windowing.js";

/**
 * @template T
 * @typedef {object} Column
 * @property {string} label
 * @property {(row: T) => import("./dom.js").Child | import("./dom.js").Child[]} cell
 * @property {string} [sort] the sort key this column's header sets
 * @property {boolean} [numeric]
 */

/**
 * @typedef {object} SortState
 * @property {string} sort
 * @property {"asc" | "desc"} order
 * @property {(column: string) => void} onSort
 */

/**
 * @template T
 * @param {readonly Column<T>[]} columns
 * @param {SortState} [sort]
 */
function headerRow(columns, sort) {
  return h(
    "tr",
    { "aria-rowindex": 1 },
    columns.map((c) => {
      const sorted = sort !== undefined && c.sort === sort.sort;
      const th = h("th", { scope: "col", class: c.numeric ? "num" : undefined, "aria-sort": sorted ? (sort.order === "asc" ? "ascending" : "descending") : undefined });
      if (sort && c.sort) {
        const key = c.sort;
        const button = h("button", { type: "button", class: "sort", "data-sort": key }, [c.label, h("span", { "aria-hidden": "true", class: "arrow" }, sorted ? (sort.order === "asc" ? " ▲" : " ▼") : "")]);
        button.addEventListener("click", () => { sort.onSort(key); });
        th.append(button);
      } else th.append(c.label);
      return th;
    }),
  );
}

/**
 * @template T
 * @param {readonly Column<T>[]} columns
 * @param {T} row
 * @param {number} [index] the row's aria-rowindex
 */
function bodyRow(columns, row, index) {
  return h(
    "tr",
    { "aria-rowindex": index },
    columns.map((c) => {
      const td = h("td", { class: c.numeric ? "num" : undefined });
      const v = c.cell(row);
      append(td, Array.isArray(v) ? v : [v]);
      return td;
    }),
  );
}

/**
 * A whole table, or `empty` as a paragraph when there are no rows.
 * @template T
 * @param {{ caption: string, columns: readonly Column<T>[], rows: readonly T[], empty: string, id?: string, sort?: SortState }} t
 */
export function simpleTable(t) {
  if (t.rows.length === 0) return h("p", { class: "empty", id: t.id }, t.empty);
  return h("table", { id: t.id }, [
    h("caption", {}, t.caption),
    h("thead", {}, headerRow(t.columns, t.sort)),
    h("tbody", {}, t.rows.map((r) => bodyRow(t.columns, r))),
  ]);
}

/**
 * A table in a scrolling region that keeps only the rows in view (and some either side) in the
 * DOM. Rows have one fixed height (CSS: .windowed tbody tr).
 * @template T
 */
export class WindowedTable {
  /** @type {HTMLElement} */ #scroller;
  /** @type {HTMLTableElement} */ #table;
  /** @type {HTMLTableSectionElement} */ #body;
  /** @type {readonly Column<T>[]} */ #columns;
  /** @type {readonly T[]} */ #rows = [];
  #rowHeight = 33;
  #start = -1;
  #end = -1;
  #frame = 0;
  #measured = false;

  /**
   * @param {HTMLElement} host
   * @param {{ caption: string, columns: readonly Column<T>[], label: string }} t
   */
  constructor(host, t) {
    this.#columns = t.columns;
    this.#body = h("tbody");
    this.#table = h("table", { class: "windowed" }, [h("caption", {}, t.caption), h("thead"), this.#body]);
    this.#scroller = h("div", { class: "scroller", tabindex: 0, role: "region", "aria-label": t.label }, this.#table);
    this.#scroller.addEventListener("scroll", () => {
      if (this.#frame) return;
      this.#frame = requestAnimationFrame(() => {
        this.#frame = 0;
        this.#paint(false);
      });
    });
    host.replaceChildren(this.#scroller);
  }

  /**
   * @param {readonly T[]} rows
   * @param {SortState} sort
   */
  update(rows, sort) {
    this.#rows = rows;
    this.#table.setAttribute("aria-rowcount", String(rows.length + 1));
    const head = this.#table.tHead;
    if (head) head.replaceChildren(headerRow(this.#columns, sort));
    this.#paint(true);
  }

  /** @param {boolean} force */
  #paint(force) {
    const { start, end } = visibleRange({ scrollTop: this.#scroller.scrollTop, viewport: this.#scroller.clientHeight || 600, rowHeight: this.#rowHeight, total: this.#rows.length });
    if (!force && start === this.#start && end === this.#end) return;
    this.#start = start;
    this.#end = end;
    /** @param {number} px */
    const spacer = (px) => {
      const tr = h("tr", { class: "spacer", "aria-hidden": "true" }, h("td", { colspan: this.#columns.length }));
      tr.style.height = `${px}px`;
      return tr;
    };
    const rows = [];
    for (let i = start; i < end; i++) rows.push(bodyRow(this.#columns, /** @type {T} */ (this.#rows[i]), i + 2));
    this.#body.replaceChildren(spacer(start * this.#rowHeight), ...rows, spacer((this.#rows.length - end) * this.#rowHeight));
    const first = rows[0];
    if (!this.#measured && first && first.offsetHeight > 0) {
      this.#measured = true;
      if (first.offsetHeight === this.#rowHeight) return;
      this.#rowHeight = first.offsetHeight;
      this.#paint(true);
    }
  }
}
