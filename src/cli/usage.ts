// `keyward usage`: the analytics store's views on the command line. Top keys
// (the default), one key's timeline, status codes, top endpoints, countries
// and source networks, each filtered by namespace, owner, label selector, key
// and time range, printed as a table, JSON or CSV.
import type { AnalyticsQueries, UsageFilter } from "../analytics/queries.ts";
import { parseSelector } from "../analytics/selector.ts";
import { loadConfig } from "../config/config.ts";
import { KeywardError } from "../errors.ts";
import { createLogger, type Level } from "../log.ts";
import { parseChoice, parseCount, parseInstant, splitFlags, type FlagKind } from "./args.ts";
import { isoTime, OUTPUT_FORMATS, render, type Column, type OutputFormat } from "./output.ts";
import { openReportStore } from "./store.ts";

export const USAGE_VIEWS = ["keys", "timeline", "status", "endpoints", "countries", "networks"] as const;
export type UsageView = (typeof USAGE_VIEWS)[number];

export const USAGE_FLAGS: Readonly<Record<string, FlagKind>> = {
  namespace: "string",
  owner: "string",
  selector: "string",
  key: "string",
  since: "string",
  until: "string",
  by: "string",
  limit: "string",
  output: "string",
};

export interface UsageRequest {
  view: UsageView;
  filter: UsageFilter;
  /** timeline: hour or day; endpoints: route or path. */
  by: string;
  limit: number;
  output: OutputFormat;
}

/** Default range: the last 7 days. */
const DEFAULT_SINCE = "7d";

/** The request a command line asks for; every bad value is a ConfigInvalid naming the flag. */
export function parseUsageRequest(words: readonly string[], values: ReadonlyMap<string, string>, now: number): UsageRequest {
  if (words.length > 1) throw new KeywardError("ConfigInvalid", `keyward usage: one view at most, got ${words.join(" ")}`);
  const view = words[0] === undefined ? "keys" : parseChoice("view", words[0], USAGE_VIEWS);
  const since = parseInstant("since", values.get("since") ?? DEFAULT_SINCE, now);
  const until = values.has("until") ? parseInstant("until", values.get("until") ?? "", now) : now;
  if (until <= since) throw new KeywardError("ConfigInvalid", `--since (${isoTime(since)}) must be before --until (${isoTime(until)})`);
  const filter: UsageFilter = { since, until };
  const ns = values.get("namespace");
  if (ns !== undefined) filter.namespaces = ns.split(",").map((s) => s.trim()).filter(Boolean);
  if (values.has("owner")) filter.owner = values.get("owner") ?? "";
  const selector = values.get("selector");
  if (selector !== undefined) {
    parseSelector(selector);
    filter.selector = selector;
  }
  const key = values.get("key");
  if (key !== undefined) {
    if (!/^([a-z0-9][-a-z0-9.]*\/[a-z0-9][-a-z0-9.]*|[A-Za-z0-9][A-Za-z0-9_-]*)$/.test(key)) throw new KeywardError("ConfigInvalid", `--key=${JSON.stringify(key)}: give namespace/name or a key id`);
    filter.key = key;
  }
  const byDefault = view === "endpoints" ? "route" : "hour";
  const byText = values.get("by");
  if (byText !== undefined && view !== "timeline" && view !== "endpoints") throw new KeywardError("ConfigInvalid", `--by applies to the timeline (hour, day) and endpoints (route, path) views`);
  const by = byText === undefined ? byDefault : view === "endpoints" ? parseChoice("by", byText, ["route", "path"]) : parseChoice("by", byText, ["hour", "day"]);
  return {
    view,
    filter,
    by,
    limit: values.has("limit") ? parseCount("limit", values.get("limit") ?? "") : 20,
    output: parseChoice("output", values.get("output") ?? "table", OUTPUT_FORMATS),
  };
}

const n = (v: number): string => String(v);
const counts = <R extends { requests: number; allowed: number; denied: number; status4xx: number; status5xx: number }>(): Column<R>[] => [
  { header: "REQUESTS", cell: (r) => n(r.requests) },
  { header: "ALLOWED", cell: (r) => n(r.allowed) },
  { header: "DENIED", cell: (r) => n(r.denied) },
  { header: "4XX", cell: (r) => n(r.status4xx) },
  { header: "5XX", cell: (r) => n(r.status5xx) },
];

/** The queries the views read: the store's, or the usage API's (`kubectl keyward usage`). */
export type UsageViews = Pick<AnalyticsQueries, "topKeys" | "timeline" | "statusCodes" | "endpoints" | "countries" | "networks">;

/** Runs the view and renders it. */
export async function usageReport(q: UsageViews, r: UsageRequest): Promise<string> {
  const f = r.filter;
  const doc = <T>(rows: T[]) => ({ view: r.view, since: isoTime(f.since), until: isoTime(f.until), ...(r.view === "timeline" || r.view === "endpoints" ? { by: r.by } : {}), rows });
  switch (r.view) {
    case "keys": {
      const rows = await q.topKeys(f, r.limit);
      const cols: Column<(typeof rows)[number]>[] = [
        { header: "NAMESPACE", cell: (k) => k.namespace },
        { header: "NAME", cell: (k) => k.name },
        { header: "OWNER", cell: (k) => k.owner },
        ...counts<(typeof rows)[number]>(),
        { header: "DELETED", cell: (k) => (k.deletedAt === undefined ? "" : isoTime(k.deletedAt)) },
      ];
      return render(r.output, cols, rows, doc(rows));
    }
    case "timeline": {
      const rows = await q.timeline(f, r.by === "day" ? "day" : "hour");
      const cols: Column<(typeof rows)[number]>[] = [
        { header: r.by === "day" ? "DAY" : "HOUR", cell: (p) => (r.by === "day" ? isoTime(p.at).slice(0, 10) : isoTime(p.at)) },
        ...counts<(typeof rows)[number]>(),
        { header: "UPSTREAM_AVG_MS", cell: (p) => (p.upstreamMicrosAvg === undefined ? "" : (p.upstreamMicrosAvg / 1000).toFixed(1)) },
        { header: "REQUEST_BYTES", cell: (p) => n(p.requestBytes) },
        { header: "RESPONSE_BYTES", cell: (p) => n(p.responseBytes) },
      ];
      return render(r.output, cols, rows, doc(rows));
    }
    case "status": {
      const rows = await q.statusCodes(f);
      return render(r.output, [{ header: "STATUS", cell: (s) => n(s.status) }, { header: "REQUESTS", cell: (s) => n(s.requests) }], rows, doc(rows));
    }
    case "endpoints": {
      const rows = await q.endpoints(f, r.by === "path" ? "path" : "route", r.limit);
      const cols: Column<(typeof rows)[number]>[] = [
        { header: r.by === "path" ? "PATH" : "ROUTE", cell: (e) => e.endpoint || "(no route)" },
        ...counts<(typeof rows)[number]>(),
        { header: "CHECK_AVG_US", cell: (e) => n(e.checkMicrosAvg) },
      ];
      return render(r.output, cols, rows, doc(rows));
    }
    case "countries": {
      const rows = await q.countries(f, r.limit);
      return render(r.output, [{ header: "COUNTRY", cell: (c) => c.country || "(unknown)" }, { header: "REQUESTS", cell: (c) => n(c.requests) }], rows, doc(rows));
    }
    case "networks": {
      const rows = await q.networks(f, r.limit);
      const cols: Column<(typeof rows)[number]>[] = [
        { header: "NETWORK", cell: (x) => x.network },
        { header: "REQUESTS", cell: (x) => n(x.requests) },
        { header: "FIRST_SEEN", cell: (x) => isoTime(x.firstAt) },
        { header: "LAST_SEEN", cell: (x) => isoTime(x.lastAt) },
      ];
      return render(r.output, cols, rows, doc(rows));
    }
  }
}

/** `keyward usage [VIEW] [flags] [settings]`: prints the view; returns the exit code. */
export async function usageCommand(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, out: (s: string) => void, now: () => number = Date.now): Promise<number> {
  const { values, words, rest } = splitFlags("usage", argv, USAGE_FLAGS);
  const { config, args } = loadConfig(rest, env);
  if (args.length) throw new KeywardError("ConfigInvalid", `keyward usage: unexpected ${args.join(" ")}`);
  const request = parseUsageRequest(words, values, now());
  const store = await openReportStore("usage", config, createLogger({ level: config.logLevel as Level }), now);
  try {
    out(await usageReport(store.queries, request));
  } finally {
    await store.close();
  }
  return 0;
}
