// @ts-check
// A time-series chart (uPlot) with its text alternative: the chart has a summary as its label,
// and the same figures are in a table under it. update() redraws in place.

import uPlot from "../assets/uplot.esm.js";
import { append, h } from "./dom.js";
import { CHART_GRID, CHART_TEXT } from "./palette.js";
import { formatDateTime } from "./format.js";

/**
 * @typedef {object} Series
 * @property {string} label
 * @property {string} color
 * @property {(p: Record<string, number | undefined>) => number | undefined} value
 */

/**
 * @typedef {object} ChartSpec
 * @property {string} title
 * @property {readonly Series[]} series
 * @property {(n: number) => string} format how a value reads in the table and on the axis
 */

export class TimeChart {
  /** @type {ChartSpec} */ #spec;
  /** @type {HTMLElement} */ #plotHost;
  /** @type {HTMLElement} */ #tableHost;
  /** @type {HTMLElement} */ #summary;
  /** @type {uPlot | undefined} */ #plot;

  /**
   * @param {HTMLElement} host
   * @param {ChartSpec} spec
   */
  constructor(host, spec) {
    this.#spec = spec;
    const id = `${host.id}-summary`;
    this.#summary = h("p", { class: "chart-summary", id });
    this.#plotHost = h("div", { class: "plot", role: "img", "aria-describedby": id, "aria-label": spec.title });
    this.#tableHost = h("div", { class: "chart-table" });
    host.replaceChildren(
      h("figure", {}, [h("figcaption", {}, spec.title), this.#plotHost, this.#summary, h("details", {}, [h("summary", {}, `${spec.title}: the figures`), this.#tableHost])]),
    );
    new ResizeObserver(() => {
      if (this.#plot) this.#plot.setSize({ width: this.#width(), height: 220 });
    }).observe(this.#plotHost);
  }

  #width() {
    return Math.max(300, this.#plotHost.clientWidth);
  }

  /** @param {readonly Record<string, number | undefined>[]} points each with `at` (ms) */
  update(points) {
    const xs = points.map((p) => Math.floor((p.at ?? 0) / 1000));
    const ys = this.#spec.series.map((s) => points.map((p) => s.value(p) ?? null));
    /** @type {uPlot.AlignedData} */
    const data = [xs, ...ys];
    if (!this.#plot) {
      const axis = { stroke: CHART_TEXT, grid: { stroke: CHART_GRID, width: 1 }, ticks: { stroke: CHART_GRID, width: 1 } };
      this.#plot = new uPlot(
        {
          width: this.#width(),
          height: 220,
          tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
          series: [{ label: "time (UTC)" }, ...this.#spec.series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: points.length < 60 }, value: (/** @type {uPlot} */ _u, /** @type {number | null} */ v) => (v === null ? "—" : this.#spec.format(v)) }))],
          axes: [axis, { ...axis, size: 70, values: (/** @type {uPlot} */ _u, /** @type {number[]} */ splits) => splits.map((v) => this.#spec.format(v)) }],
          legend: { live: true },
          cursor: { drag: { x: false, y: false } },
        },
        data,
        this.#plotHost,
      );
    } else this.#plot.setData(data);
    this.#describe(points, ys);
  }

  /**
   * @param {readonly Record<string, number | undefined>[]} points
   * @param {(number | null)[][]} ys
   */
  #describe(points, ys) {
    const first = points[0]?.at;
    const last = points.at(-1)?.at;
    const totals = this.#spec.series.map((s, i) => `${s.label} ${this.#spec.format((ys[i] ?? []).reduce((/** @type {number} */ a, v) => (v === null ? a : Math.max(a, v)), 0))}`);
    this.#summary.textContent = points.length === 0 ? "No data in this range." : `${points.length} points from ${formatDateTime(first)} to ${formatDateTime(last)}; highest: ${totals.join(", ")}.`;
    const table = h("table", {}, [
      h("caption", {}, this.#spec.title),
      h("thead", {}, h("tr", {}, [h("th", { scope: "col" }, "Time (UTC)"), ...this.#spec.series.map((s) => h("th", { scope: "col", class: "num" }, s.label))])),
    ]);
    const body = h("tbody");
    points.forEach((p, row) => {
      const tr = h("tr", {}, h("th", { scope: "row" }, formatDateTime(p.at)));
      append(tr, ys.map((col) => h("td", { class: "num" }, col[row] === null || col[row] === undefined ? "—" : this.#spec.format(col[row]))));
      body.append(tr);
    });
    table.append(body);
    this.#tableHost.replaceChildren(table);
  }
}
