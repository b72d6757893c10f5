// Grafana's PostgreSQL data source, as far as keyward's dashboards use it: reading
// the dashboards of deploy/grafana, and expanding a query the way Grafana does
// before PostgreSQL sees it, so the suites can run every panel's SQL without a
// Grafana. Expansion has three steps, in Grafana's order:
//
// 1. Template variables (Grafana's frontend). Only `${name:sqlstring}` is accepted:
//    each value quoted with `'`, any `'` in it doubled, several values joined with
//    `,` (for `IN (...)`). A bare `$name`, `${name}`, `[[name]]` or another format
//    fails: the dashboards must never splice a value in unquoted.
// 2. The global substitutions of Grafana's SQL engine, plain text replacements:
//    `$__interval_ms` (the interval in ms), `$__interval` (the interval as Grafana
//    formats it: 1h, 5m, 1d), `$__unixEpochFrom()` and `$__unixEpochTo()` (the range's
//    bounds in whole epoch seconds).
// 3. The PostgreSQL macro engine: a call matches `$name(args)` with no `)` inside
//    its arguments, which are split on `,` and trimmed. Known here:
//    `$__unixEpochGroupAlias(column, interval)` → `floor((column)/S)*S AS "time"`,
//    S the interval in seconds (ms, s, m, h, d, w). Any other macro fails.
//
// Afterwards no `$` may remain outside string literals: a leftover is a macro or a
// variable Grafana would not expand either.

import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const GRAFANA_DIR = resolve(import.meta.dirname, "..", "..", "deploy", "grafana");
export const POSTGRES_DATASOURCE = "grafana-postgresql-datasource";

export interface DatasourceRef {
  type?: string;
  uid?: string;
}

export interface Target {
  refId: string;
  datasource?: DatasourceRef;
  rawSql?: string;
  format?: string;
  expr?: string;
}

export interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: DatasourceRef;
  targets?: Target[];
  panels?: Panel[];
}

export interface Variable {
  name: string;
  type: string;
  query?: string | { rawSql?: string; query?: string };
  datasource?: DatasourceRef;
  multi?: boolean;
  includeAll?: boolean;
}

export interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  templating: { list: Variable[] };
  panels: Panel[];
}

export interface DashboardFile {
  file: string;
  dashboard: Dashboard;
}

export function readDashboards(): DashboardFile[] {
  return readdirSync(GRAFANA_DIR)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((file) => ({ file, dashboard: JSON.parse(readFileSync(join(GRAFANA_DIR, file), "utf8")) as Dashboard }));
}

/** Dashboards whose panels query the PostgreSQL data source. */
export function postgresDashboards(): DashboardFile[] {
  return readDashboards().filter(({ dashboard }) => dashboard.templating.list.some((v) => v.type === "datasource" && v.query === POSTGRES_DATASOURCE));
}

/** Every panel, rows' nested panels included. */
export function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/** A variable's SQL, whichever of Grafana's two shapes it is stored in. */
export function variableSql(v: Variable): string | undefined {
  if (typeof v.query === "string") return v.query;
  return v.query?.rawSql ?? v.query?.query;
}

export class ExpansionError extends Error {}

export interface Expansion {
  /** Values of the template variables: a string, or a list for multi-value variables. */
  vars: Readonly<Record<string, string | readonly string[]>>;
  /** The dashboard's time range, ms since the epoch. */
  from: number;
  to: number;
  /** The panel's interval, ms. */
  intervalMs: number;
}

const sqlstring = (v: string | readonly string[]): string => (typeof v === "string" ? [v] : v).map((x) => `'${x.replaceAll("'", "''")}'`).join(",");

const UNITS: readonly [string, number][] = [
  ["y", 365 * 86_400_000],
  ["w", 7 * 86_400_000],
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1000],
];

/** An interval as Grafana writes it for `$__interval`: the largest unit it is at least one of. */
export function formatInterval(ms: number): string {
  for (const [u, size] of UNITS) if (ms >= size) return `${Math.floor(ms / size)}${u}`;
  return `${ms}ms`;
}

/** An interval argument of a macro, in seconds. */
export function intervalSeconds(text: string): number {
  const m = /^(\d+)(ms|s|m|h|d|w)$/.exec(text.replace(/^'|'$/g, ""));
  if (!m) throw new ExpansionError(`interval ${text} is not one this expander knows`);
  const n = Number(m[1]);
  const unit = m[2] as string;
  return unit === "ms" ? n / 1000 : (n * (UNITS.find(([u]) => u === unit)?.[1] ?? 0)) / 1000;
}

function expandVariables(sql: string, vars: Expansion["vars"]): string {
  const out = sql.replace(/\$\{([A-Za-z0-9_]+)(?::([A-Za-z0-9_]+))?\}|\[\[([A-Za-z0-9_]+)(?::[A-Za-z0-9_]+)?\]\]|\$([A-Za-z][A-Za-z0-9_]*)/g, (whole, name?: string, format?: string, old?: string, bare?: string) => {
    if (old !== undefined || bare !== undefined) throw new ExpansionError(`${whole}: use \${${old ?? bare ?? ""}:sqlstring}`);
    if (format !== "sqlstring") throw new ExpansionError(`${whole}: only the sqlstring format quotes a value for SQL`);
    const v = vars[name ?? ""];
    if (v === undefined) throw new ExpansionError(`${whole}: no value for this variable`);
    return sqlstring(v);
  });
  return out;
}

function expandGlobals(sql: string, e: Expansion): string {
  return sql
    .replaceAll("$__interval_ms", String(e.intervalMs))
    .replaceAll("$__interval", formatInterval(e.intervalMs))
    .replaceAll("$__unixEpochFrom()", String(Math.floor(e.from / 1000)))
    .replaceAll("$__unixEpochTo()", String(Math.floor(e.to / 1000)));
}

function expandMacros(sql: string): string {
  return sql.replace(/\$([_a-zA-Z0-9]+)\(([^)]*)\)/g, (whole, name: string, argText: string) => {
    const args = argText.split(",").map((a) => a.trim());
    if (name === "__unixEpochGroupAlias") {
      if (args.length !== 2) throw new ExpansionError(`${whole}: needs a column and an interval`);
      const s = intervalSeconds(args[1] ?? "");
      return `floor((${args[0] ?? ""})/${s})*${s} AS "time"`;
    }
    throw new ExpansionError(`${whole}: unknown macro`);
  });
}

/** The SQL with string literals blanked, to look for what is left unexpanded. */
function outsideLiterals(sql: string): string {
  return sql.replace(/'(?:[^']|'')*'/g, "''");
}

/**
 * Expands a panel's or a variable's SQL as Grafana's PostgreSQL data source does, for the
 * variables, range and interval given. Throws ExpansionError on anything it does not know.
 */
export function expandQuery(sql: string, e: Expansion): string {
  // Variables come from the frontend, before the backend's macros; Grafana's own `$__` names are
  // left to the later steps.
  const vars = expandVariables(sql.replace(/\$__/g, "\u0000"), e.vars).replaceAll("\u0000", "$__");
  const out = expandMacros(expandGlobals(vars, e));
  const left = /\$[\w{[(]*/.exec(outsideLiterals(out));
  if (left) throw new ExpansionError(`${left[0]} is left unexpanded`);
  return out;
}
