// keyward's Grafana dashboards on the PostgreSQL data source, read as files: every
// panel has a query, every query goes through the `${datasource}` variable (the
// user picks their data source; no uid of someone's Grafana is baked in), and the
// expander the integration suite runs them through behaves as Grafana does.
import { describe, expect, it } from "vitest";
import { allPanels, ExpansionError, expandQuery, formatInterval, postgresDashboards, POSTGRES_DATASOURCE, readDashboards, variableSql, type Expansion } from "../support/grafana.ts";

const DS = { type: POSTGRES_DATASOURCE, uid: "${datasource}" };
const at = (vars: Expansion["vars"] = {}): Expansion => ({ vars, from: Date.UTC(2026, 5, 8, 12), to: Date.UTC(2026, 5, 15, 12), intervalMs: 3_600_000 });

/** Every `uid` in a JSON value, with its path. */
function uids(v: unknown, path = ""): [string, unknown][] {
  if (Array.isArray(v)) return v.flatMap((x, i) => uids(x, `${path}[${i}]`));
  if (v && typeof v === "object") return Object.entries(v).flatMap(([k, x]) => [...(k === "uid" ? [[`${path}.uid`, x] as [string, unknown]] : []), ...uids(x, `${path}.${k}`)]);
  return [];
}

describe("Grafana dashboards on the PostgreSQL data source", () => {
  const dashboards = postgresDashboards();

  it("ships a per-key, an owner and tag, and an overview dashboard", () => {
    expect(dashboards.map((d) => d.dashboard.uid).sort()).toEqual(["keyward-analytics-key", "keyward-analytics-overview", "keyward-analytics-owner"]);
    const uids = readDashboards().map((d) => d.dashboard.uid);
    expect(new Set(uids).size).toBe(uids.length);
  });

  for (const { file, dashboard: d } of postgresDashboards()) {
    describe(file, () => {
      it("picks its data source through a ${datasource} variable of Grafana's PostgreSQL type", () => {
        expect(d.schemaVersion).toBeGreaterThanOrEqual(39);
        const ds = d.templating.list.filter((v) => v.type === "datasource");
        expect(ds.map((v) => [v.name, v.query])).toEqual([["datasource", POSTGRES_DATASOURCE]]);
      });

      it("has a query in every panel, through the datasource variable", () => {
        const panels = allPanels(d).filter((p) => p.type !== "row");
        expect(panels.length).toBeGreaterThan(2);
        for (const p of panels) {
          expect(p.datasource, p.title).toEqual(DS);
          expect(p.targets?.length, p.title).toBeGreaterThan(0);
          for (const t of p.targets ?? []) {
            expect(t.datasource, p.title).toEqual(DS);
            expect(t.rawSql?.trim(), p.title).toMatch(/^SELECT /);
          }
        }
        expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
        expect(new Set(panels.map((p) => p.title)).size).toBe(panels.length);
      });

      it("queries its variables through the datasource variable", () => {
        for (const v of d.templating.list.filter((x) => x.type === "query")) {
          expect(v.datasource, v.name).toEqual(DS);
          expect(variableSql(v), v.name).toMatch(/^SELECT /);
        }
      });

      it("has no data source uid of its own", () => {
        const baked = uids(d).filter(([path, uid]) => path !== ".uid" && uid !== "${datasource}");
        expect(baked).toEqual([]);
      });
    });
  }
});

describe("the Grafana query expander", () => {
  it("quotes variables as Grafana's sqlstring format does", () => {
    expect(expandQuery("SELECT 1 WHERE a = ${ns:sqlstring}", at({ ns: "team-a" }))).toBe("SELECT 1 WHERE a = 'team-a'");
    expect(expandQuery("SELECT 1 WHERE a IN (${o:sqlstring})", at({ o: ["alice", "bob"] }))).toBe("SELECT 1 WHERE a IN ('alice','bob')");
    expect(expandQuery("SELECT 1 WHERE a = ${ns:sqlstring}", at({ ns: "x' OR '1'='1" }))).toBe("SELECT 1 WHERE a = 'x'' OR ''1''=''1'");
  });

  it("refuses a variable spliced in without quoting, or without a value", () => {
    for (const sql of ["SELECT $ns", "SELECT ${ns}", "SELECT [[ns]]", "SELECT ${ns:raw}", "SELECT ${ns:csv}"]) expect(() => expandQuery(sql, at({ ns: "a" })), sql).toThrow(ExpansionError);
    expect(() => expandQuery("SELECT ${other:sqlstring}", at({ ns: "a" }))).toThrow(/no value/);
  });

  it("substitutes the range and interval as Grafana's SQL engine does", () => {
    expect(expandQuery("SELECT $__unixEpochFrom(), $__unixEpochTo(), $__interval_ms, '$__interval'", at())).toBe(`SELECT ${Date.UTC(2026, 5, 8, 12) / 1000}, ${Date.UTC(2026, 5, 15, 12) / 1000}, 3600000, '1h'`);
    expect([formatInterval(500), formatInterval(30_000), formatInterval(300_000), formatInterval(86_400_000), formatInterval(90_000)]).toEqual(["500ms", "30s", "5m", "1d", "1m"]);
  });

  it("expands $__unixEpochGroupAlias as Grafana's PostgreSQL macro engine does", () => {
    expect(expandQuery("SELECT $__unixEpochGroupAlias(r.at / 1000, $__interval), 1", at())).toBe('SELECT floor((r.at / 1000)/3600)*3600 AS "time", 1');
    expect(expandQuery("SELECT $__unixEpochGroupAlias(t, '5m')", at())).toBe('SELECT floor((t)/300)*300 AS "time"');
    expect(expandQuery("SELECT $__unixEpochGroupAlias(t, 1d)", at())).toBe('SELECT floor((t)/86400)*86400 AS "time"');
  });

  it("fails on a macro it does not know, or anything left unexpanded", () => {
    for (const sql of ["SELECT $__timeFilter(t)", "SELECT $__timeGroupAlias(t, 1h)", "SELECT $__unixEpochGroupAlias(t)", "SELECT $__unixEpochGroupAlias(t, 1M)", "SELECT $__unixEpochNanoFrom()", "SELECT $__timeFrom", "SELECT $1"]) {
      expect(() => expandQuery(sql, at()), sql).toThrow(ExpansionError);
    }
    // A dollar inside a string literal is data, not a macro.
    expect(expandQuery("SELECT '$__nothing' AS x", at())).toBe("SELECT '$__nothing' AS x");
  });

  it("expands every shipped panel and variable query", () => {
    const vars = { namespace: "team-a", apikey: "checkout", owner: ["alice"], selector: "env=prod" };
    let n = 0;
    for (const { dashboard: d } of postgresDashboards()) {
      for (const v of d.templating.list) {
        const sql = variableSql(v);
        if (v.type === "query" && sql) n += expandQuery(sql, at(vars)) ? 1 : 0;
      }
      for (const p of allPanels(d)) for (const t of p.targets ?? []) n += expandQuery(t.rawSql ?? "", at(vars)).includes("$") ? 0 : 1;
    }
    expect(n).toBeGreaterThan(15);
  });
});
