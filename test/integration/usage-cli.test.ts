// `keyward usage` as a real process over seeded stores, SQLite and a real
// PostgreSQL: every view's figures, every filter, each output format, and the
// errors for bad input. The seed (test/support/analytics-seed.ts) is moved
// forward by whole days so its rows are recent: the store keeps per-request
// rows by the real clock.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RequestRow } from "../../src/analytics/row.ts";
import { openAnalyticsStore } from "../../src/analytics/store.ts";
import { createLogger } from "../../src/log.ts";
import { clientStatus, DAY, HOUR, KEYS, NOW, seedRows } from "../support/analytics-seed.ts";
import { havePostgres, KEYWARD_PASSWORD, startPostgres, type PostgresCluster } from "../support/postgres.ts";

const root = resolve(import.meta.dirname, "..", "..");
const run = promisify(execFile);
const log = createLogger({ level: "warn", sink: () => {} });

const SHIFT = Math.floor((Date.now() - NOW) / DAY) * DAY;
/** The seed's now, moved to today (or yesterday): noon UTC. */
const T = NOW + SHIFT;
const KEY_OF = new Map(KEYS.map((k) => [k.uid, k]));
const ROWS: RequestRow[] = seedRows().map((r) => ({ ...r, at: r.at + SHIFT }));
const iso = (ms: number): string => new Date(ms).toISOString();

interface Answer {
  code: number;
  stdout: string;
  stderr: string;
}

/** `node src/main.ts ARGS`: its exit code and output. */
async function keyward(args: readonly string[], env: Record<string, string> = {}): Promise<Answer> {
  return run(process.execPath, [join(root, "src", "main.ts"), ...args], { cwd: root, env: { ...process.env, ...env } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (err: unknown) => {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
    },
  );
}

type Expected = { requests: number; allowed: number; status4xx: number; status5xx: number };
function tally(rows: readonly RequestRow[]): Expected {
  return {
    requests: rows.length,
    allowed: rows.filter((r) => r.outcome === "allowed").length,
    status4xx: rows.filter((r) => clientStatus(r) >= 400 && clientStatus(r) < 500).length,
    status5xx: rows.filter((r) => clientStatus(r) >= 500).length,
  };
}
function groupCount<K>(rows: readonly RequestRow[], by: (r: RequestRow) => K): Map<K, number> {
  const m = new Map<K, number>();
  for (const r of rows) m.set(by(r), (m.get(by(r)) ?? 0) + 1);
  return m;
}

const BACKENDS = ["sqlite", ...(havePostgres() ? ["postgres" as const] : [])] as const;

describe.each(BACKENDS)("keyward usage on %s", (kind) => {
  let dir: string;
  let pgc: PostgresCluster | undefined;
  let storeArgs: string[];
  let storeEnv: Record<string, string>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "keyward-usage-cli-"));
    const sqlitePath = join(dir, "analytics.sqlite");
    let postgresUrl = "";
    if (kind === "postgres") {
      pgc = await startPostgres();
      postgresUrl = pgc.url();
    }
    const store = await openAnalyticsStore({ store: kind, sqlitePath, postgresUrl, retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0 }, log);
    await store.upsertKeys(KEYS);
    await store.writeRequests(ROWS);
    await store.close();
    storeArgs = kind === "sqlite" ? ["--analytics-store=sqlite", `--analytics-sqlite-path=${sqlitePath}`] : ["--analytics-store=postgres"];
    // The URL, password and all, through the environment as the chart gives it.
    storeEnv = kind === "postgres" ? { KEYWARD_ANALYTICS_POSTGRES_URL: postgresUrl } : {};
  }, 120_000);

  afterAll(async () => {
    await pgc?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  async function usage(...args: string[]): Promise<Answer> {
    return keyward(["usage", ...args, ...storeArgs], storeEnv);
  }
  // The caller names the view's row type.
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
  async function json<R>(...args: string[]): Promise<{ view: string; rows: R[] }> {
    const a = await usage(...args, "-o", "json");
    expect(a.stderr).toBe("");
    expect(a.code).toBe(0);
    const doc: { view: string; rows: R[] } = JSON.parse(a.stdout) as never;
    return doc;
  }

  // Five days and three hours: not whole days, so counted from per-request rows.
  const since = T - 5 * DAY - 3 * HOUR;
  const range = ["--since", iso(since), "--until", iso(T + 1)];
  const inRange = ROWS.filter((r) => r.at >= since && r.at <= T);

  it("top keys: each key's requests, allowed, 4xx and 5xx, most first", async () => {
    const out = await json<{ namespace: string; name: string; owner: string; requests: number; allowed: number; denied: number; status4xx: number; status5xx: number; deletedAt?: number }>(...range);
    const expected = [...groupCount(inRange, (r) => r.uid).keys()].map((uid) => {
      const k = KEY_OF.get(uid)!;
      const t = tally(inRange.filter((r) => r.uid === uid));
      return { namespace: k.namespace, name: k.name, owner: k.owner, ...t, denied: t.requests - t.allowed, ...(k.deletedAt ? { deletedAt: k.deletedAt } : {}) };
    });
    expected.sort((a, b) => b.requests - a.requests || a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
    expect(out.view).toBe("keys");
    expect(out.rows.map(({ namespace, name, owner, requests, allowed, denied, status4xx, status5xx, deletedAt }) => ({ namespace, name, owner, requests, allowed, denied, status4xx, status5xx, ...(deletedAt ? { deletedAt } : {}) }))).toEqual(expected);
  });

  it.each([
    ["--namespace", "team-a", (r: RequestRow) => KEY_OF.get(r.uid)!.namespace === "team-a"],
    ["--owner", "alice", (r: RequestRow) => KEY_OF.get(r.uid)!.owner === "alice"],
    ["--selector", "env=prod", (r: RequestRow) => KEY_OF.get(r.uid)!.labels.env === "prod"],
    ["--selector", "tier!=gold", (r: RequestRow) => KEY_OF.get(r.uid)!.labels.tier !== "gold"],
    ["--key", "team-b/billing", (r: RequestRow) => r.uid === "u-billing"],
    ["--key", "kw_srch0001", (r: RequestRow) => r.keyId === "kw_srch0001"],
  ])("filters top keys by %s %s", async (flag, value, keep) => {
    const out = await json<{ name: string; requests: number }>(...range, flag, value);
    const expected = groupCount(inRange.filter(keep), (r) => KEY_OF.get(r.uid)!.name);
    expect(new Map(out.rows.map((k) => [k.name, k.requests]))).toEqual(expected);
  });

  it("one key's timeline: hourly as CSV, daily over whole days from the rollups", async () => {
    const mine = inRange.filter((r) => r.uid === "u-checkout");
    const csv = await usage("timeline", "--key", "team-a/checkout", "--by", "hour", ...range, "-o", "csv");
    expect(csv.code).toBe(0);
    const lines = csv.stdout.trimEnd().split("\r\n");
    expect(lines[0]).toBe("HOUR,REQUESTS,ALLOWED,DENIED,4XX,5XX,UPSTREAM_AVG_MS,REQUEST_BYTES,RESPONSE_BYTES");
    const hours = groupCount(mine, (r) => new Date(Math.floor(r.at / HOUR) * HOUR).toISOString().replace(/\.000Z$/, "Z"));
    expect(new Map(lines.slice(1).map((l) => [l.split(",")[0], Number(l.split(",")[1])]))).toEqual(hours);

    const from = Math.floor(T / DAY) * DAY - 10 * DAY;
    const daily = await json<{ at: number; requests: number; allowed: number; responseBytes: number }>("timeline", "--key", "team-a/checkout", "--by", "day", "--since", iso(from).slice(0, 10), "--until", iso(from + 10 * DAY).slice(0, 10));
    const days = ROWS.filter((r) => r.uid === "u-checkout" && r.at >= from && r.at < from + 10 * DAY);
    expect(daily.rows).toHaveLength(10);
    expect(new Map(daily.rows.map((p) => [p.at, p.requests]))).toEqual(groupCount(days, (r) => Math.floor(r.at / DAY) * DAY));
    expect(daily.rows.reduce((n, p) => n + p.responseBytes, 0)).toBe(days.reduce((n, r) => n + (r.responseBytes ?? 0), 0));
  });

  it("status codes the clients got", async () => {
    const out = await json<{ status: number; requests: number }>("status", ...range, "--namespace", "team-a");
    const expected = groupCount(inRange.filter((r) => KEY_OF.get(r.uid)!.namespace === "team-a"), clientStatus);
    expect(new Map(out.rows.map((s) => [s.status, s.requests]))).toEqual(expected);
    expect(out.rows.map((s) => s.status)).toEqual([...expected.keys()].sort((a, b) => a - b));
  });

  it("top endpoints: routes and raw paths", async () => {
    const routes = await json<{ endpoint: string; requests: number; status5xx: number }>("endpoints", ...range);
    expect(new Map(routes.rows.map((e) => [e.endpoint, e.requests]))).toEqual(groupCount(inRange, (r) => r.route ?? ""));
    const paths = await json<{ endpoint: string; requests: number }>("endpoints", "--by", "path", "--limit", "3", ...range);
    const all = [...groupCount(inRange, (r) => r.path ?? "").entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    expect(paths.rows.map((e) => [e.endpoint, e.requests])).toEqual(all.slice(0, 3));
  });

  it("countries and source networks", async () => {
    const countries = await json<{ country: string; requests: number }>("countries", ...range);
    expect(new Map(countries.rows.map((c) => [c.country, c.requests]))).toEqual(groupCount(inRange, (r) => r.country ?? ""));
    const networks = await json<{ network: string; requests: number; firstAt: number; lastAt: number }>("networks", ...range, "--owner", "bob");
    const bob = inRange.filter((r) => r.uid === "u-search");
    expect(new Map(networks.rows.map((n) => [n.network, n.requests]))).toEqual(groupCount(bob, (r) => r.network!));
    for (const n of networks.rows) {
      const ats = bob.filter((r) => r.network === n.network).map((r) => r.at);
      expect([n.firstAt, n.lastAt]).toEqual([Math.min(...ats), Math.max(...ats)]);
    }
  });

  it("prints a table by default", async () => {
    const a = await usage(...range, "--namespace", "team-b");
    expect(a.code).toBe(0);
    const lines = a.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAMESPACE\s+NAME\s+OWNER\s+REQUESTS\s+ALLOWED\s+DENIED\s+4XX\s+5XX\s+DELETED$/);
    expect(lines[1]).toMatch(new RegExp(`^team-b\\s+billing\\s+alice\\s+${inRange.filter((r) => r.uid === "u-billing").length}\\s`));
  });

  it("refuses bad input with a clear error and exit 1, never showing the password", async () => {
    for (const [args, message] of [
      [["--since", "last-week"], /--since="last-week": give a duration back from now/],
      [["timeline", "--by", "minute"], /--by="minute": one of hour, day/],
      [["--output", "xml"], /--output="xml": one of table, json, csv/],
      [["--selector", "a b"], /label selector/],
    ] as const) {
      const a = await usage(...args);
      expect(a.code).toBe(1);
      expect(a.stderr).toMatch(message);
      expect(a.stdout).toBe("");
    }
    if (kind === "postgres") {
      const a = await keyward(["usage", "--analytics-store=postgres"], { KEYWARD_ANALYTICS_POSTGRES_URL: pgc!.url({ password: "Wrong-pw-5555" }) });
      expect(a.code).toBe(1);
      expect(a.stderr).toMatch(/AnalyticsStoreFailed: .*password authentication failed/);
      expect(a.stderr).not.toContain("Wrong-pw-5555");
      expect(a.stderr).not.toContain(KEYWARD_PASSWORD);
    } else {
      const a = await keyward(["usage", "--analytics-store=sqlite", `--analytics-sqlite-path=${join(dir, "missing.sqlite")}`]);
      expect(a.code).toBe(1);
      expect(a.stderr).toMatch(/missing\.sqlite: no such file/);
    }
  });
});
