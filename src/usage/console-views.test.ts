import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openAnalyticsStore, type AnalyticsStore } from "../analytics/store.ts";
import { apiKey, newKey, policy } from "../api/fixtures.test-support.ts";
import type { ApiKey } from "../api/types.ts";
import { computeReview, REVIEW_DEFAULTS } from "../analytics/review.ts";
import { createLogger } from "../log.ts";
import { DAY, HOUR, KEYS, NOW, seedRows } from "../../test/support/analytics-seed.ts";
import { ApiAuth } from "./api-auth.ts";
import { FakeReviewer } from "./api-fixtures.test-support.ts";
import { answerEtag, consoleSources, listenUsageApi, startUsageApi, type UsageApi } from "./api.ts";
import { defaultConfig } from "../config/config.ts";
import type { KubeRest } from "../k8s/rest.ts";
import { send } from "../console/http.test-support.ts";
import { CONSOLE_CSP } from "../console/static.ts";
import { sortInventory, type InventoryItem } from "./console-views.ts";

interface Reply {
  status: number;
  text: string;
  body: { error?: string; namespaces?: string[] | "all"; total?: number; items?: Record<string, unknown>[]; item?: Record<string, unknown> };
}

let store: AnalyticsStore;
let api: UsageApi;
let reviewer: FakeReviewer;
let live: ApiKey[] | undefined;

const iso = (ms: number): string => new Date(ms).toISOString();

function liveKeys(): ApiKey[] {
  const checkout = apiKey("team-a", "checkout", { owner: "alice", scopes: ["orders:read"], expiresAt: iso(NOW + 20 * DAY), rotation: { every: "720h" } }, [
    { ...newKey("kw_chk00001", "grace", iso(NOW + DAY)).version, createdAt: iso(NOW - 60 * DAY) },
    { ...newKey("kw_chk00002").version, createdAt: iso(NOW - DAY) },
  ], { tier: "gold", env: "prod" });
  checkout.metadata.uid = "u-checkout";
  checkout.metadata.creationTimestamp = iso(NOW - 60 * DAY) as unknown as Date;
  checkout.status = { ...checkout.status, state: "Rotating", currentKeyId: "kw_chk00002", lastRotationAt: iso(NOW - DAY) };
  const search = apiKey("team-a", "search", { owner: "bob" }, [newKey("kw_srch0001").version], { tier: "silver" });
  search.metadata.uid = "u-search";
  search.status = { ...search.status, currentKeyId: "kw_srch0001" };
  // Live in team-b, never used: only the live view knows it.
  const payments = apiKey("team-b", "payments", { owner: "carol" }, [newKey("kw_pay00001").version], { env: "prod" });
  payments.metadata.uid = "u-payments";
  payments.status = { ...payments.status, currentKeyId: "kw_pay00001" };
  return [checkout, search, payments];
}

function get(path: string, token: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: api.port, path, headers: { authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, text, body: JSON.parse(text) as Reply["body"] });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

const policies = [policy("team-a", "api", { rules: [{ name: "main", paths: ["/**"], scopes: ["orders:read"] }] })];

beforeAll(async () => {
  const log = createLogger({ sink: () => {} });
  store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW }, log);
  await store.upsertKeys(KEYS);
  await store.writeRequests(seedRows());
  await store.alerts.fire({ uid: "u-checkout", alert: "KeySilent", namespace: "team-a", name: "checkout", owner: "alice", message: "no requests for 1h" }, NOW - HOUR, 0);
  await store.alerts.fire({ uid: "u-billing", alert: "ForbiddenSpike", namespace: "team-b", name: "billing", owner: "alice", message: "403s" }, NOW - 5 * HOUR, 0);
  await store.alerts.resolve("u-billing", "ForbiddenSpike", NOW - 3 * HOUR);
  live = liveKeys();
  reviewer = new FakeReviewer(
    { "tok-a": { username: "tenant-a" }, "tok-b": { username: "tenant-b" }, "tok-admin": { username: "admin" } },
    { "tenant-a": ["team-a"], "tenant-b": ["team-b"], admin: [""] },
  );
  const rest = { request: <T>() => Promise.resolve({ items: policies } as T) };
  api = await listenUsageApi({ address: "127.0.0.1:0", queries: store.queries, console: consoleSources(rest, () => live, 30 * DAY), auth: new ApiAuth(reviewer, { audiences: [], cacheTtlMs: 0 }), log, now: () => NOW });
});

afterAll(async () => {
  await api.stop();
  await store.close();
});

const names = (items: Record<string, unknown>[] | undefined): string[] => (items ?? []).map((i) => `${String(i.namespace)}/${String(i.name)}`);

describe("inventory view", () => {
  it("lists the caller's keys with live state, requests over 24 h, last use and firing alerts", async () => {
    const r = await get("/api/v1/inventory", "tok-a");
    expect(r.status).toBe(200);
    expect(r.body.total).toBe(2);
    expect(names(r.body.items)).toEqual(["team-a/checkout", "team-a/search"]);
    const day = await store.queries.topKeys({ since: NOW - DAY, until: NOW, namespaces: ["team-a"] });
    const activity = await store.queries.keyActivity({ namespaces: ["team-a"] });
    const checkout = r.body.items?.[0];
    expect(checkout).toMatchObject({
      uid: "u-checkout",
      keyId: "kw_chk00002",
      owner: "alice",
      labels: { tier: "gold", env: "prod" },
      state: "Rotating",
      expiresAt: NOW + 20 * DAY,
      requests24h: day.find((k) => k.uid === "u-checkout")?.requests,
      lastUsedAt: activity.find((a) => a.uid === "u-checkout")?.lastUsedAt,
      firingAlerts: ["KeySilent"],
    });
    expect(checkout?.requests24h).toBeGreaterThan(0);
    expect(checkout?.requests).toBe(checkout?.requests24h);
  });

  it("shows deleted keys from the store and unused live keys from the data plane", async () => {
    const r = await get("/api/v1/inventory?namespace=team-b", "tok-b");
    expect(r.body.items?.map((i) => [i.name, i.state, i.requests24h])).toEqual([
      ["billing", "Deleted", 3],
      ["payments", "Active", 0],
    ]);
  });

  it("answers from the store alone, state Unknown or Deleted, while the live view is not synced", async () => {
    live = undefined;
    try {
      const r = await get("/api/v1/inventory", "tok-admin");
      expect(r.body.items?.map((i) => [i.name, i.state])).toEqual([
        ["checkout", "Unknown"],
        ["search", "Unknown"],
        ["billing", "Deleted"],
      ]);
    } finally {
      live = liveKeys();
    }
  });

  it("sorts, pages and filters by owner, selector and range", async () => {
    const all = await get("/api/v1/inventory?sort=requests24h&order=desc", "tok-admin");
    const counts = all.body.items?.map((i) => Number(i.requests24h)) ?? [];
    expect(counts).toEqual([...counts].sort((a, b) => b - a));
    expect(all.body.total).toBe(4);
    const page = await get("/api/v1/inventory?sort=name&limit=2&offset=1", "tok-admin");
    expect(page.body.total).toBe(4);
    expect(names(page.body.items)).toEqual(["team-a/search", "team-b/billing"]);
    expect(names((await get("/api/v1/inventory?owner=carol", "tok-admin")).body.items)).toEqual(["team-b/payments"]);
    expect(names((await get("/api/v1/inventory?selector=env%3Dprod", "tok-admin")).body.items)).toEqual(["team-a/checkout", "team-b/billing", "team-b/payments"]);
    const ranged = await get(`/api/v1/inventory?key=team-a/search&since=${iso(NOW - 10 * DAY)}&until=${iso(NOW)}`, "tok-a");
    const expected = await store.queries.topKeys({ since: NOW - 10 * DAY, until: NOW, key: "team-a/search" });
    expect(ranged.body.items?.[0]?.requests).toBe(expected[0]?.requests);
    expect(Number(ranged.body.items?.[0]?.requests)).toBeGreaterThan(Number(ranged.body.items?.[0]?.requests24h));
  });

  it("puts keys without the sorted value last in either order", () => {
    const item = (name: string, lastUsedAt?: number): InventoryItem => ({ namespace: "n", name, uid: name, owner: "", labels: {}, scopes: [], state: "Active", requests24h: 0, requests: 0, firingAlerts: [], ...(lastUsedAt !== undefined ? { lastUsedAt } : {}) });
    const order = (o: "asc" | "desc"): string[] => sortInventory([item("a"), item("b", 2), item("c", 1)], "lastUsedAt", o).map((i) => i.name);
    expect(order("asc")).toEqual(["c", "b", "a"]);
    expect(order("desc")).toEqual(["b", "c", "a"]);
  });
});

describe("key view", () => {
  it("gives versions with their states and last use, scopes, rotation and alerts", async () => {
    const r = await get("/api/v1/key?key=team-a/checkout", "tok-a");
    expect(r.status).toBe(200);
    const versions = await store.queries.keyVersions("u-checkout");
    expect(r.body.item).toMatchObject({
      namespace: "team-a",
      name: "checkout",
      uid: "u-checkout",
      state: "Rotating",
      scopes: ["orders:read"],
      rotation: "720h",
      lastRotatedAt: NOW - DAY,
      versions: [
        { keyId: "kw_chk00001", state: "grace", createdAt: NOW - 60 * DAY, graceUntil: NOW + DAY, lastUsedAt: versions[0]?.lastUsedAt },
        { keyId: "kw_chk00002", state: "active", createdAt: NOW - DAY },
      ],
      alerts: [{ alert: "KeySilent", state: "firing", startsAt: NOW - HOUR, summary: "no requests for 1h" }],
    });
    expect(versions[0]?.lastUsedAt).toBeGreaterThan(NOW - DAY);
  });

  it("finds a key by a version id only the live view knows", async () => {
    const r = await get("/api/v1/key?key=kw_chk00002", "tok-a");
    expect(r.status).toBe(200);
    expect(r.body.item).toMatchObject({ namespace: "team-a", name: "checkout" });
  });

  it("answers a deleted key from the store, its versions expired", async () => {
    const r = await get("/api/v1/key?key=team-b/billing", "tok-b");
    expect(r.body.item).toMatchObject({ name: "billing", state: "Deleted", deletedAt: NOW - 2 * HOUR, versions: [{ keyId: "kw_bill0001", state: "expired" }] });
    expect((r.body.item?.alerts as unknown[]).length).toBe(1);
  });

  it("answers 404 for a key that does not exist in a namespace the caller may read, and 400 without key", async () => {
    expect((await get("/api/v1/key?key=team-a/nope", "tok-a")).status).toBe(404);
    expect((await get("/api/v1/key", "tok-a")).status).toBe(400);
  });
});

describe("latency, denials and alerts views", () => {
  it("latency is the timeline, which carries mean check and upstream latency", async () => {
    const r = await get("/api/v1/latency?key=team-a/checkout&since=48h", "tok-a");
    const t = await get("/api/v1/timeline?key=team-a/checkout&since=48h", "tok-a");
    expect(r.body.items).toEqual(t.body.items);
    expect(typeof r.body.items?.[0]?.checkMicrosAvg).toBe("number");
    expect(r.body.items?.some((p) => Number(p.checkMicrosAvg) >= 50 && p.upstreamMicrosAvg !== undefined)).toBe(true);
  });

  it("denials lists the caller's refused requests with reasons, newest first", async () => {
    const r = await get("/api/v1/denials?since=168h", "tok-a");
    const items = r.body.items ?? [];
    expect(items.length).toBeGreaterThan(0);
    expect(items.length).toBeLessThanOrEqual(50);
    expect(new Set(items.map((d) => d.namespace))).toEqual(new Set(["team-a"]));
    expect(new Set(items.map((d) => d.reason))).toEqual(new Set(["scope_missing", "rate_limited"]));
    const at = items.map((d) => Number(d.at));
    expect(at).toEqual([...at].sort((a, b) => b - a));
    expect(Object.keys(items[0] ?? {}).sort()).toEqual(["at", "country", "keyId", "method", "name", "namespace", "path", "reason", "sourceAddress", "status", "uid"]);
    expect(String(items[0]?.keyId)).toMatch(/^kw_/);
    expect((await get("/api/v1/denials?since=168h&limit=3", "tok-a")).body.items).toHaveLength(3);
  });

  it("alerts lists firing alerts, and recent resolved ones unless state=firing", async () => {
    const a = await get("/api/v1/alerts", "tok-a");
    expect(a.body.items).toEqual([{ uid: "u-checkout", alert: "KeySilent", namespace: "team-a", name: "checkout", owner: "alice", state: "firing", startsAt: NOW - HOUR, summary: "no requests for 1h" }]);
    const all = await get("/api/v1/alerts", "tok-admin");
    expect(all.body.items?.map((i) => [i.alert, i.state, i.endsAt])).toEqual([
      ["KeySilent", "firing", undefined],
      ["ForbiddenSpike", "resolved", NOW - 3 * HOUR],
    ]);
    expect((await get("/api/v1/alerts?state=firing", "tok-admin")).body.items?.map((i) => i.alert)).toEqual(["KeySilent"]);
    expect((await get(`/api/v1/alerts?since=${iso(NOW - 2 * HOUR)}`, "tok-admin")).body.items?.map((i) => i.alert)).toEqual(["KeySilent"]);
  });
});

describe("review view", () => {
  it("is keyward review's report for the caller's namespaces, from the live keys and policies", async () => {
    const r = await get("/api/v1/review", "tok-a");
    expect(r.status).toBe(200);
    const expected = await computeReview(store.queries, { keys: liveKeys(), policies }, { namespaces: ["team-a"] }, { now: NOW, ...REVIEW_DEFAULTS, retentionMs: 30 * DAY });
    expect(r.body.item).toEqual(JSON.parse(JSON.stringify(expected)));
    expect(r.body.item).toMatchObject({ source: "cluster", keys: 2 });
  });
});

describe("console views never cross namespaces", () => {
  const foreign = ["namespace=team-b", "key=team-b/billing", "key=team-b/payments", "key=kw_bill0001", "key=kw_pay00001", "key=team-b/never-existed", "key=kw_nosuchkey"];
  const views = ["inventory", "key", "latency", "denials", "alerts", "review"];

  it("refuses tenant A every view of another namespace's key, by name or key id, with one body", async () => {
    const bodies = new Set<string>();
    for (const view of views) {
      for (const param of foreign) {
        if (view === "review" && param.startsWith("key=")) continue;
        // key and latency need a key: with a namespace alone they are a 400 before any review.
        if ((view === "key" || view === "latency") && param.startsWith("namespace=")) continue;
        const r = await get(`/api/v1/${view}?${param}`, "tok-a");
        expect(r.status, `${view}?${param}`).toBe(403);
        bodies.add(r.text);
      }
    }
    expect(bodies.size).toBe(1);
  });

  it("never names another namespace's key in tenant A's answers", async () => {
    for (const path of ["inventory", "inventory?sort=requests24h&order=desc", "key?key=team-a/checkout", "key?key=kw_chk00001", "latency?key=team-a/search", "denials?since=720h&limit=1000", "alerts", "alerts?since=720h", "review"]) {
      const r = await get(`/api/v1/${path}`, "tok-a");
      expect(r.status, path).toBe(200);
      expect(r.text, path).not.toMatch(/team-b|billing|payments|kw_bill|kw_pay|carol/);
    }
  });
});

describe("hosted console (--console-address)", () => {
  it("serves the pages and the usage API under /api/v1/ on one port, with the usage API's bearer-token auth and scope", async () => {
    const config = defaultConfig({ consoleAddress: "127.0.0.1:0", usageApiAddress: "" });
    const rest = { request: <T>() => Promise.resolve({ items: policies } as T) } as unknown as KubeRest;
    const hosted = await startUsageApi({ config, rest, queries: store.queries, live: () => live, log: createLogger({ sink: () => {} }), reviewer });
    try {
      const port = hosted.consolePort ?? 0;
      expect(port).toBeGreaterThan(0);
      const page = await send(port, "/");
      expect(page.status).toBe(200);
      expect(page.body).toContain('<meta name="keyward-api-base" content="api/v1/">');
      expect(page.headers["content-security-policy"]).toBe(CONSOLE_CSP);
      const anonymous = await send(port, "/api/v1/inventory");
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers["content-security-policy"]).toBe(CONSOLE_CSP);
      // What an OIDC proxy forwards: the user's token, and identity headers the console never reads.
      const forged = await send(port, "/api/v1/inventory", { authorization: "Bearer tok-a", "x-forwarded-user": "admin", "x-auth-request-groups": "system:masters" });
      expect(forged.status).toBe(200);
      expect(names((JSON.parse(forged.body) as Reply["body"]).items)).toEqual(["team-a/checkout", "team-a/search"]);
      expect((await send(port, "/api/v1/key?key=team-b/payments", { authorization: "Bearer tok-a" })).status).toBe(403);
      expect(forged.headers["access-control-allow-origin"]).toBeUndefined();
    } finally {
      await hosted.stop();
    }
  });
});

describe("inventory view: conditional requests", () => {
  /** A GET with extra headers: status, ETag and the body's text. */
  function getWith(port: number, path: string, token: string, headers: Record<string, string> = {}): Promise<{ status: number; etag: string | undefined; text: string }> {
    return new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path, headers: { authorization: `Bearer ${token}`, ...headers } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const etag = res.headers.etag;
          resolve({ status: res.statusCode ?? 0, etag, text: Buffer.concat(chunks).toString("utf8") });
        });
      });
      req.on("error", reject);
      req.end();
    });
  }

  it("tags the answer with the SHA-256 of its bytes, and answers 304 without a body while the caller holds it", async () => {
    const first = await getWith(api.port, "/api/v1/inventory", "tok-a");
    expect(first.status).toBe(200);
    expect(first.etag).toBe(answerEtag(first.text));
    expect(first.etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    for (const held of [first.etag!, `W/${first.etag!}`, `"other", ${first.etag!}`, "*"]) {
      const again = await getWith(api.port, "/api/v1/inventory", "tok-a", { "if-none-match": held });
      expect(again, held).toMatchObject({ status: 304, etag: first.etag, text: "" });
    }
    // Another tag, or a changed inventory, is answered in full with the new tag.
    expect((await getWith(api.port, "/api/v1/inventory", "tok-a", { "if-none-match": '"other"' })).status).toBe(200);
    const before = live;
    live = liveKeys().map((k) => (k.metadata.name === "search" ? { ...k, status: { ...k.status, state: "Disabled" as const } } : k));
    try {
      const changed = await getWith(api.port, "/api/v1/inventory", "tok-a", { "if-none-match": first.etag! });
      expect(changed.status).toBe(200);
      expect(changed.etag).not.toBe(first.etag);
      expect(changed.text).toContain('"Disabled"');
    } finally {
      live = before;
    }
  });

  it("never answers 304 for a refused request, nor lends one caller's tag to another's answer", async () => {
    const a = await getWith(api.port, "/api/v1/inventory", "tok-a");
    expect((await getWith(api.port, "/api/v1/inventory?namespace=team-b", "tok-a", { "if-none-match": "*" })).status).toBe(403);
    expect((await getWith(api.port, "/api/v1/inventory", "not-a-token", { "if-none-match": "*" })).status).toBe(401);
    const b = await getWith(api.port, "/api/v1/inventory", "tok-b", { "if-none-match": a.etag! });
    expect(b.status).toBe(200);
    expect(b.etag).not.toBe(a.etag);
  });

  it("keeps an unranged inventory's answer, tag included, while only time passes; a ranged one names its range", async () => {
    let clock = NOW;
    const moving = await listenUsageApi({
      address: "127.0.0.1:0",
      queries: store.queries,
      console: consoleSources({ request: <T>() => Promise.resolve({ items: policies } as T) }, () => live, 30 * DAY),
      auth: new ApiAuth(reviewer, { audiences: [], cacheTtlMs: 0 }),
      log: createLogger({ sink: () => {} }),
      now: () => clock,
    });
    try {
      const first = await getWith(moving.port, "/api/v1/inventory", "tok-a");
      expect(JSON.parse(first.text)).not.toHaveProperty("since");
      clock += 5000;
      expect(await getWith(moving.port, "/api/v1/inventory", "tok-a", { "if-none-match": first.etag! })).toMatchObject({ status: 304, etag: first.etag });
      const ranged = JSON.parse((await getWith(moving.port, `/api/v1/inventory?since=${iso(NOW - DAY)}`, "tok-a")).text) as { since?: string; until?: string };
      expect(ranged).toMatchObject({ since: iso(NOW - DAY), until: iso(clock) });
    } finally {
      await moving.stop();
    }
  });
});
