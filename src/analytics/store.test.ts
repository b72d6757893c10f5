import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { defaultConfig, loadConfig } from "../config/config.ts";
import { createLogger } from "../log.ts";
import { analyticsStoreOptions, openAnalyticsStore } from "./store.ts";

const DAY = 86_400_000;

describe("analyticsStoreOptions", () => {
  it("is SQLite in the working directory by default, 30 days of rows, rollups for good", () => {
    expect(analyticsStoreOptions(defaultConfig())).toMatchObject({ store: "sqlite", sqlitePath: "keyward-analytics.sqlite", retentionMs: 30 * DAY, rollupRetentionMs: 0 });
  });

  it("takes PostgreSQL's URL from the environment, 90 days of retention, and off", () => {
    const { config } = loadConfig(["--analytics-store=postgres", "--analytics-retention=2160h"], { KEYWARD_ANALYTICS_POSTGRES_URL: "postgres://kw:pw@db:5432/kw" });
    expect(analyticsStoreOptions(config)).toMatchObject({ store: "postgres", postgresUrl: "postgres://kw:pw@db:5432/kw", retentionMs: 90 * DAY });
    expect(analyticsStoreOptions(defaultConfig({ analyticsStore: "off" }))).toBeUndefined();
    expect(() => loadConfig(["--analytics-retention=1h"], {})).toThrow(/minimum/);
  });
});

describe("openAnalyticsStore", () => {
  it("refuses PostgreSQL without a URL, before connecting to anything", async () => {
    const o = analyticsStoreOptions(defaultConfig({ analyticsStore: "postgres" }));
    await expect(openAnalyticsStore(o!, createLogger({ sink: () => {} }))).rejects.toMatchObject({ code: "ConfigInvalid" });
  });

  it("opens an in-memory SQLite store, writes and reads it back", async () => {
    const now = Date.UTC(2026, 0, 10, 12);
    const store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => now }, createLogger({ sink: () => {} }));
    await store.upsertKeys([{ uid: "u", namespace: "ns", name: "k", owner: "o", labels: {}, scopes: [], createdAt: now }]);
    await store.writeRequests([{ at: now - 1000, uid: "u", keyId: "kw_1", front: "http", outcome: "allowed", reason: "allowed", status: 200, checkMicros: 5 }]);
    expect(await store.queries.topKeys({ since: now - DAY, until: now })).toMatchObject([{ namespace: "ns", name: "k", requests: 1 }]);
    await store.close();
  });
});

describe("a SQLite batch on the event loop's thread", () => {
  it("lets the loop turn between its statements, so checks are answered during a large batch; every row lands", async () => {
    const now = Date.UTC(2026, 0, 10, 12);
    const store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => now }, createLogger({ sink: () => {} }));
    await store.upsertKeys([{ uid: "u", namespace: "ns", name: "k", owner: "o", labels: {}, scopes: [], createdAt: now }]);
    // 1000 rows, each its own rollup: 10 statements of rows and 10 of rollups.
    const rows = Array.from({ length: 1000 }, (_, i) => ({ at: now - 1000 - i, uid: "u", keyId: "kw_1", front: "http", outcome: "allowed" as const, reason: "allowed", status: 200, checkMicros: 5, country: `c${i}` }));
    let turns = 0;
    let writing = true;
    const spin = (): void => {
      if (!writing) return;
      turns++;
      setImmediate(spin);
    };
    setImmediate(spin);
    await store.writeRequests(rows);
    writing = false;
    expect(turns).toBeGreaterThanOrEqual(19);
    expect(await store.queries.topKeys({ since: now - DAY, until: now })).toMatchObject([{ name: "k", requests: 1000 }]);
    await store.close();
  });
});

describe("the PostgreSQL client", () => {
  it("is loaded only for a PostgreSQL store: a SQLite store's threads go without it", () => {
    // A process of its own, as keyward runs: which CommonJS packages it loaded.
    const code = `
      import { createRequire } from "node:module";
      const { openAnalyticsStore } = await import(${JSON.stringify(new URL("./store.ts", import.meta.url).href)});
      const { createLogger } = await import(${JSON.stringify(new URL("../log.ts", import.meta.url).href)});
      const store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 86400000, rollupRetentionMs: 0, retentionIntervalMs: 0 }, createLogger({ sink: () => {} }));
      await store.close();
      const loaded = Object.keys(createRequire(import.meta.url).cache);
      process.stdout.write(JSON.stringify({ pg: loaded.some((f) => f.includes("/node_modules/pg/")) }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", code], { encoding: "utf8" })) as { pg: boolean };
    expect(out.pg).toBe(false);
  });
});
