// @ts-check
// The Key view, one key: its versions and rotation timeline, traffic by outcome and upstream class, latency,
// endpoints, countries and networks, recent denials and alerts.

import { getItem, getItems } from "./api.js";
import { alertsTable, badge, tags } from "./cells.js";
import { TimeChart } from "./chart.js";
import { h, replace } from "./dom.js";
import { compactParams, stepFor, viewHref } from "./filters.js";
import { formatCount, formatDateTime, formatMicros, formatRelative } from "./format.js";
import { SERIES } from "./palette.js";
import { setTitle } from "./shell.js";
import { simpleTable } from "./table.js";

/** @typedef {import("./types.js").KeyDetail} KeyDetail */
/** @typedef {import("./types.js").TimelinePoint} TimelinePoint */
/** @typedef {import("./types.js").LatencyPoint} LatencyPoint */
/** @typedef {import("./types.js").EndpointUsage} EndpointUsage */
/** @typedef {import("./types.js").CountryUsage} CountryUsage */
/** @typedef {import("./types.js").NetworkUsage} NetworkUsage */
/** @typedef {import("./types.js").Denial} Denial */
/** @typedef {import("./types.js").KeyVersion} KeyVersion */

const count = (/** @type {number} */ n) => formatCount(Math.round(n));
/**
 * A series read from a field of the point.
 * @param {string} label @param {string} color @param {string} name
 * @returns {import("./chart.js").Series}
 */
const field = (label, color, name) => ({ label, color, value: (p) => p[name] });

const OUTCOMES = [field("allowed", SERIES.allowed, "allowed"), field("401", SERIES.status401, "status401"), field("403", SERIES.status403, "status403"), field("429", SERIES.status429, "status429")];
const ALLOWED_DENIED = [field("allowed", SERIES.allowed, "allowed"), field("denied", SERIES.denied, "denied")];
const UPSTREAM = [field("2xx", SERIES.upstream2xx, "upstream2xx"), field("3xx", SERIES.upstream3xx, "upstream3xx"), field("4xx", SERIES.upstream4xx, "upstream4xx"), field("5xx", SERIES.upstream5xx, "upstream5xx")];
const CLIENT_ERRORS = [field("4xx", SERIES.upstream4xx, "status4xx"), field("5xx", SERIES.upstream5xx, "status5xx")];
const LATENCY = [field("keyward check, p50", SERIES.checkP50, "checkMicrosP50"), field("keyward check, mean", SERIES.checkAvg, "checkMicrosAvg"), field("upstream, mean", SERIES.upstreamAvg, "upstreamMicrosAvg")];

/**
 * @param {string} id @param {string} title
 * @param {import("./dom.js").Child[]} content
 */
const section = (id, title, content) => h("section", { "aria-labelledby": `${id}-heading` }, [h("h2", { id: `${id}-heading` }, title), ...content]);

/** @type {import("./app.js").Mount} */
export function mountKey(host, { params, filters }) {
  const key = (params.get("key") ?? "").trim();
  setTitle(key === "" ? "Key" : `Key ${key}`);
  if (key === "") {
    replace(host, h("p", { class: "error", role: "alert" }, "No key given: open a key from the Keys page."));
    return undefined;
  }
  /** @param {string} id @param {string} [cls] */
  const slot = (id, cls) => h("div", { id, class: cls });
  const overview = h("dl", { id: "overview", class: "overview" });
  const timelineHost = slot("timeline", "timeline");
  const versionsHost = slot("versions");
  const charts = { outcomes: slot("chart-outcomes", "chart"), upstream: slot("chart-upstream", "chart"), latency: slot("chart-latency", "chart") };
  const tables = { endpoints: slot("endpoints"), countries: slot("countries"), networks: slot("networks"), denials: slot("denials"), alerts: slot("alerts") };
  replace(host, [
    section("overview", "Overview", [overview]),
    section("versions", "Versions and rotation", [timelineHost, versionsHost]),
    section("traffic", "Traffic", [h("div", { class: "charts" }, [charts.outcomes, charts.upstream, charts.latency])]),
    section("endpoints", "Top endpoints", [tables.endpoints]),
    h("div", { class: "columns" }, [section("countries", "Countries", [tables.countries]), section("networks", "Source networks", [tables.networks])]),
    section("denials", "Recent denials", [tables.denials]),
    section("alerts", "Alerts", [tables.alerts]),
  ]);
  /** @type {TimeChart | undefined} */ let outcomes;
  /** @type {TimeChart | undefined} */ let upstream;
  /** @type {TimeChart | undefined} */ let latency;

  /** @param {TimelinePoint[]} pts */
  const drawTraffic = (pts) => {
    outcomes ??= new TimeChart(charts.outcomes, { title: "Requests by outcome", format: count, series: pts.some((p) => p.status401 !== undefined) ? OUTCOMES : ALLOWED_DENIED });
    const byUpstream = pts.some((p) => p.upstream2xx !== undefined);
    upstream ??= new TimeChart(charts.upstream, { title: byUpstream ? "Requests by upstream status class" : "Requests answered 4xx and 5xx", format: count, series: byUpstream ? UPSTREAM : CLIENT_ERRORS });
    outcomes.update(pts);
    upstream.update(pts);
  };

  /** @param {KeyDetail} k @param {number} now */
  const drawOverview = (k, now) => {
    setTitle(`Key ${k.namespace}/${k.name}`);
    /** @type {[string, import("./dom.js").Child | import("./dom.js").Child[]][]} */
    const rows = [
      ["State", badge(k.state)],
      ["Owner", h("a", { href: viewHref("keys", { ...filters, owner: k.owner }) }, k.owner)],
      ["Namespace", h("a", { href: viewHref("keys", { ...filters, namespace: k.namespace }) }, k.namespace)],
      ["Tags", tags(k.labels)],
      ["Scopes", k.scopes.length ? k.scopes.map((s) => h("span", { class: "tag" }, s)) : "none"],
      ["Created", formatDateTime(k.createdAt)],
      ["Expires", k.expiresAt === undefined ? "never" : `${formatDateTime(k.expiresAt)} (${formatRelative(k.expiresAt, now)})`],
    ];
    replace(overview, rows.flatMap(([dt, dd]) => [h("dt", {}, dt), h("dd", {}, dd)]));
  };

  /** @param {KeyVersion[]} versions @param {number} now */
  const drawVersions = (versions, now) => {
    const starts = versions.map((v) => v.createdAt).filter((x) => x !== undefined);
    const from = Math.min(now - 86_400_000, ...starts);
    const span = Math.max(1, now - from);
    const pct = (/** @type {number} */ t) => `${(((Math.min(now, Math.max(from, t)) - from) / span) * 100).toFixed(2)}%`;
    /** @param {KeyVersion} v @param {number} i */
    const end = (v, i) => (v.state === "active" ? now : v.graceUntil ?? versions[i - 1]?.createdAt ?? now);
    replace(
      timelineHost,
      h("div", { role: "img", "aria-label": `Rotation timeline from ${formatDateTime(from)} to now: ${versions.map((v) => `${v.keyId} ${v.state}`).join(", ")}` }, [
        ...versions.map((v, i) => {
          const left = pct(v.createdAt ?? from);
          const right = pct(end(v, i));
          const bar = h("div", { class: `span ${v.state}` });
          // through CSSOM: the console's CSP refuses style attributes
          bar.style.left = left;
          bar.style.width = `calc(${right} - ${left})`;
          return h("div", { class: "lane", "aria-hidden": "true" }, [h("code", {}, v.keyId), h("div", { class: "track" }, bar)]);
        }),
      ]),
    );
    replace(
      versionsHost,
      simpleTable({
        caption: "Versions, newest first",
        empty: "No versions on record.",
        rows: versions,
        columns: [
          { label: "Key id", cell: (v) => h("code", {}, v.keyId) },
          { label: "State", cell: (v) => badge(v.state) },
          { label: "Created", cell: (v) => formatDateTime(v.createdAt) },
          { label: "Grace until", cell: (v) => (v.graceUntil === undefined ? "—" : formatDateTime(v.graceUntil)) },
          { label: "Last used", cell: (v) => (v.lastUsedAt === undefined ? "never" : `${formatDateTime(v.lastUsedAt)} (${formatRelative(v.lastUsedAt, now)})`) },
        ],
      }),
    );
  };

  return async () => {
    const now = Date.now();
    const q = (/** @type {Record<string, string | number | undefined>} */ extra = {}) => compactParams({ key, since: filters.since, until: filters.until, ...extra });
    const step = stepFor(filters, now);
    const [detail, timeline, lat, endpoints, countries, networks, denials] = await Promise.all([
      /** @type {Promise<KeyDetail>} */ (getItem("key", compactParams({ key }))),
      /** @type {Promise<TimelinePoint[]>} */ (getItems("timeline", q({ step }))),
      /** @type {Promise<LatencyPoint[]>} */ (getItems("latency", q({ step }))),
      /** @type {Promise<EndpointUsage[]>} */ (getItems("endpoints", q({ limit: 10 }))),
      /** @type {Promise<CountryUsage[]>} */ (getItems("countries", q({ limit: 10 }))),
      /** @type {Promise<NetworkUsage[]>} */ (getItems("networks", q({ limit: 10 }))),
      /** @type {Promise<Denial[]>} */ (getItems("denials", q({ limit: 20 }))),
    ]);
    drawOverview(detail, now);
    drawVersions(detail.versions, now);
    drawTraffic(timeline);
    // the series the answer has (the p50 is not kept by every store)
    latency ??= new TimeChart(charts.latency, { title: "Latency", format: formatMicros, series: LATENCY.filter((s, i) => i === 1 || lat.some((p) => s.value(p) !== undefined)) });
    latency.update(lat);
    replace(
      tables.endpoints,
      simpleTable({
        caption: "Top endpoints by requests",
        empty: "No requests in this range.",
        rows: endpoints,
        columns: [
          { label: "Endpoint", cell: (e) => h("code", {}, e.endpoint === "" ? "(no route)" : e.endpoint) },
          { label: "Requests", numeric: true, cell: (e) => formatCount(e.requests) },
          { label: "Denied", numeric: true, cell: (e) => formatCount(e.denied) },
          { label: "4xx", numeric: true, cell: (e) => formatCount(e.status4xx) },
          { label: "5xx", numeric: true, cell: (e) => formatCount(e.status5xx) },
          { label: "Check latency", numeric: true, cell: (e) => formatMicros(e.checkMicrosAvg) },
        ],
      }),
    );
    replace(
      tables.countries,
      simpleTable({
        caption: "Requests by country",
        empty: "No requests in this range.",
        rows: countries,
        columns: [
          { label: "Country", cell: (c) => (c.country === "" ? "unknown" : c.country) },
          { label: "Requests", numeric: true, cell: (c) => formatCount(c.requests) },
        ],
      }),
    );
    replace(
      tables.networks,
      simpleTable({
        caption: "Requests by source network",
        empty: "No requests in this range.",
        rows: networks,
        columns: [
          { label: "Network", cell: (n) => h("code", {}, n.network) },
          { label: "Requests", numeric: true, cell: (n) => formatCount(n.requests) },
          { label: "Last seen", cell: (n) => formatRelative(n.lastAt, now) },
        ],
      }),
    );
    replace(
      tables.denials,
      simpleTable({
        caption: "Denied requests, newest first",
        empty: "No denials in this range.",
        rows: denials,
        columns: [
          { label: "Time", cell: (d) => formatDateTime(d.at) },
          { label: "Status", numeric: true, cell: (d) => d.status },
          { label: "Reason", cell: (d) => d.reason },
          { label: "Request", cell: (d) => h("code", {}, `${d.method} ${d.path}`) },
          { label: "Source", cell: (d) => `${d.sourceAddress}${d.country ? ` (${d.country})` : ""}` },
          { label: "Key id", cell: (d) => (d.keyId ? h("code", {}, d.keyId) : "—") },
        ],
      }),
    );
    replace(tables.alerts, alertsTable(detail.alerts, { caption: "Alerts of this key", empty: "No alerts for this key.", now }));
  };
}
