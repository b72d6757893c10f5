// The shipped Prometheus rules and Grafana dashboard: the PrometheusRule carries
// the same groups as the plain rule file promtool tests, and every metric they
// query is one keyward exports.
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const root = resolve(import.meta.dirname, "..", "..");
const read = (p: string): string => readFileSync(join(root, p), "utf8");

/** Every metric name registered in keyward's sources (`name: "keyward_..."`). */
function exportedMetrics(): Set<string> {
  const out = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (p.endsWith(".ts") && !p.endsWith(".test.ts")) for (const m of read(p).matchAll(/name: "(keyward_[a-z0-9_]+)"/g)) out.add(m[1] ?? "");
    }
  };
  walk("src");
  for (const m of read("src/usage/metrics.ts").matchAll(/"(keyward_key_[a-z0-9_]+)"/g)) out.add(m[1] ?? "");
  return out;
}

/** Metric names an expression reads (histogram suffixes folded onto their metric). */
function queried(expr: string): string[] {
  return [...expr.matchAll(/\b(keyward_[a-z0-9_]+)/g)].map((m) => (m[1] ?? "").replace(/_(bucket|sum|count)$/, ""));
}

interface RuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string; annotations?: Record<string, string> }[] }[];
}

const RUNBOOKS = "https://github.com/keyward/keyward/blob/main/docs/runbooks.md";

/** The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens. */
function headingAnchors(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const m of markdown.matchAll(/^#{1,6} +(.+)$/gm)) {
    out.add(
      (m[1] ?? "")
        .trim()
        .toLowerCase()
        .replace(/[^a-z0-9 _-]/g, "")
        .replace(/ /g, "-"),
    );
  }
  return out;
}

describe("shipped monitoring", () => {
  const plain = parse(read("deploy/prometheus/keyward.rules.yaml")) as RuleFile;
  const metrics = exportedMetrics();

  it("ships the same rule groups as a PrometheusRule", () => {
    const cr = parse(read("deploy/prometheus/prometheusrule.yaml")) as { kind: string; spec: RuleFile };
    expect(cr.kind).toBe("PrometheusRule");
    expect(cr.spec.groups).toEqual(plain.groups);
  });

  it("links every alert to its section of docs/runbooks.md", () => {
    const anchors = headingAnchors(read("docs/runbooks.md"));
    const alerts = plain.groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);
    expect(alerts.length).toBeGreaterThan(20);
    const broken = alerts.filter((r) => {
      const url = r.annotations?.runbook_url ?? "";
      const anchor = url.startsWith(`${RUNBOOKS}#`) ? url.slice(RUNBOOKS.length + 1) : "";
      return !anchors.has(anchor);
    });
    expect(broken.map((r) => `${r.alert ?? ""}: ${r.annotations?.runbook_url ?? "no runbook_url"}`)).toEqual([]);
  });

  it("queries only metrics keyward exports", () => {
    const exprs = plain.groups.flatMap((g) => g.rules.map((r) => r.expr));
    const dash = JSON.parse(read("deploy/grafana/keyward-usage.json")) as { panels: { targets?: { expr: string }[] }[] };
    for (const p of dash.panels) for (const t of p.targets ?? []) exprs.push(t.expr);
    const unknown = [...new Set(exprs.flatMap(queried))].filter((m) => !metrics.has(m));
    expect(unknown).toEqual([]);
    expect(exprs.length).toBeGreaterThan(30);
  });

  it("has a per-key view and a tenant overview in the dashboard", () => {
    const dash = JSON.parse(read("deploy/grafana/keyward-usage.json")) as { templating: { list: { name: string }[] }; panels: { type: string; title: string; repeat?: string }[] };
    expect(dash.templating.list.map((v) => v.name)).toEqual(["datasource", "key_id"]);
    const titles = dash.panels.map((p) => p.title);
    expect(titles).toEqual(expect.arrayContaining(["Tenant overview: all keys", "Keys by volume, last used and outcome", "Anomalies (usage alerts by key)", "Requests by outcome", "Requests by route", "Upstream status", "Last used"]));
    expect(dash.panels.find((p) => p.type === "row" && p.repeat === "key_id")).toBeDefined();
  });
});
