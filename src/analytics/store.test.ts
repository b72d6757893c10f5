import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

describe("the store of keyward authz (its writer on a thread)", () => {
  it("loads neither the query layer (Kysely) nor the country database on the main thread until a read; the writer thread opens and migrates the file", () => {
    // A process of its own, as keyward runs: the modules its main thread loads (module hooks are per thread).
    const dir = mkdtempSync(join(tmpdir(), "keyward-store-main-"));
    try {
      const url = (p: string): string => JSON.stringify(new URL(p, import.meta.url).href);
      const code = `
        import { registerHooks } from "node:module";
        const loaded = [];
        registerHooks({ load(u, c, next) { loaded.push(u); return next(u, c); } });
        const { startAnalyticsStore } = await import(${url("./store.ts")});
        const { startIngest } = await import(${url("../usage/ingest.ts")});
        const { createLogger } = await import(${url("../log.ts")});
        const { defaultConfig } = await import(${url("../config/config.ts")});
        const { ManualClock } = await import(${url("../k8s/clock.ts")});
        const { Registry } = await import(${JSON.stringify(createRequire(import.meta.url).resolve("prom-client"))});
        const log = createLogger({ sink: () => {} });
        const { store, opened } = await startAnalyticsStore({ store: "sqlite", sqlitePath: ${JSON.stringify(join(dir, "a.sqlite"))}, postgresUrl: "", retentionMs: 86400000, rollupRetentionMs: 0, retentionIntervalMs: 0, writerThread: true }, log);
        const ingest = await startIngest({ writer: store, config: defaultConfig(), clock: new ManualClock(), log, registry: new Registry(), uidOf: () => undefined });
        await opened;
        await store.upsertKeys([{ uid: "u", namespace: "ns", name: "k", owner: "o", labels: {}, scopes: [], createdAt: 0 }]);
        const heavy = (urls) => ({ kysely: urls.some((u) => u.includes("/node_modules/kysely/")), maxmind: urls.some((u) => u.includes("/node_modules/maxmind/")), queries: urls.some((u) => u.endsWith("/analytics/queries.ts")) });
        const beforeRead = heavy(loaded);
        const namespaces = await store.queries.keyNamespaces();
        const afterRead = heavy(loaded);
        await ingest.stop();
        await store.close();
        process.stdout.write(JSON.stringify({ beforeRead, afterRead, namespaces }));
      `;
      // A file, not -e: worker threads inherit the process's flags, and --input-type would refuse their module.
      writeFileSync(join(dir, "main.mjs"), code);
      const out = JSON.parse(execFileSync(process.execPath, [join(dir, "main.mjs")], { encoding: "utf8" })) as Record<string, unknown>;
      expect(out).toEqual({ beforeRead: { kysely: false, maxmind: false, queries: false }, afterRead: { kysely: true, maxmind: false, queries: true }, namespaces: ["ns"] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
