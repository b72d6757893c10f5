import { request } from "node:http";
import { request as httpsRequest } from "node:https";
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { openAnalyticsStore, type AnalyticsStore } from "../analytics/store.ts";
import { defaultConfig, loadConfig } from "../config/config.ts";
import type { KubeRest } from "../k8s/rest.ts";
import { createLogger } from "../log.ts";
import { certDir } from "../../test/support/certs.ts";
import { DAY, KEYS, NOW, seedRows } from "../../test/support/analytics-seed.ts";
import { ApiAuth } from "./api-auth.ts";
import { FakeReviewer, HeldReviewer } from "./api-fixtures.test-support.ts";
import { listenUsageApi, MAX_TOKEN_BYTES, MAX_URL_BYTES, startUsageApi, type UsageApi } from "./api.ts";

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: { error?: string; namespaces?: string[] | "all"; items?: Record<string, unknown>[]; since?: string; until?: string };
}

const logLines: string[] = [];
let store: AnalyticsStore;
let api: UsageApi;
let reviewer: FakeReviewer;

function get(path: string, headers: Record<string, string> = {}, method = "GET", port = api.port): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? (JSON.parse(text) as Reply["body"]) : {} });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

const as = (token: string, extra: Record<string, string> = {}): Record<string, string> => ({ authorization: `Bearer ${token}`, ...extra });
const range = `since=${new Date(NOW - 45 * DAY).toISOString()}&until=${new Date(NOW).toISOString()}`;
const VIEWS = ["keys", "status-codes", "endpoints", "endpoints?by=path", "countries", "networks"].map((v) => `/api/v1/${v}${v.includes("?") ? "&" : "?"}${range}`);

beforeAll(async () => {
  const log = createLogger({ level: "debug", sink: (l) => logLines.push(l) });
  store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW }, log);
  await store.upsertKeys(KEYS);
  await store.writeRequests(seedRows());
  reviewer = new FakeReviewer(
    { "tok-a": { username: "tenant-a" }, "tok-b": { username: "tenant-b" }, "tok-admin": { username: "admin" }, "tok-none": { username: "nobody" } },
    { "tenant-a": ["team-a"], "tenant-b": ["team-b"], admin: [""] },
  );
  api = await listenUsageApi({ address: "127.0.0.1:0", queries: store.queries, auth: new ApiAuth(reviewer, { audiences: [], cacheTtlMs: 0 }), log, now: () => NOW });
});

afterAll(async () => {
  await api.stop();
  await store.close();
});

beforeEach(() => {
  reviewer.failing = false;
  reviewer.tokenReviews = 0;
});

describe("usage API authentication", () => {
  it("answers 401 with a Bearer challenge without a token, with a token the apiserver refuses, or a header that is not a bearer token", async () => {
    for (const headers of [{}, as("forged"), { authorization: "Basic dGVuYW50LWE6eA==" }, { authorization: "Bearer" }]) {
      const r = await get(VIEWS[0]!, headers);
      expect(r.status).toBe(401);
      expect(r.headers["www-authenticate"]).toBe('Bearer realm="keyward usage"');
      expect(r.body.items).toBeUndefined();
    }
  });

  it("ignores identity headers: X-Remote-User and the like never authenticate or widen a caller", async () => {
    const forged = { "x-remote-user": "admin", "x-remote-group": "system:masters", "impersonate-user": "admin", "x-forwarded-user": "admin" };
    expect((await get(VIEWS[0]!, forged)).status).toBe(401);
    const r = await get(VIEWS[0]!, as("tok-a", forged));
    expect(r.status).toBe(200);
    expect(r.body.namespaces).toEqual(["team-a"]);
    expect(r.body.items?.every((k) => k.namespace === "team-a")).toBe(true);
  });

  it("refuses a token over its bound without asking the apiserver, and a request head over 16 KiB", async () => {
    const long = "a".repeat(MAX_TOKEN_BYTES + 1);
    const r = await get(VIEWS[0]!, as(long));
    expect(r.status).toBe(401);
    expect(r.body.error).toMatch(/at most/);
    expect(reviewer.tokenReviews).toBe(0);
    expect((await get(VIEWS[0]!, as("a".repeat(20_000)))).status).toBe(431);
    expect(reviewer.tokenReviews).toBe(0);
  });

  it("refuses a request target over its bound (414), before any review", async () => {
    const r = await get(`/api/v1/keys?owner=${"x".repeat(MAX_URL_BYTES)}`, as("tok-a"));
    expect(r.status).toBe(414);
    expect(reviewer.tokenReviews).toBe(0);
  });

  it("refuses requests beyond its in-flight bound at once (503), instead of queueing reviews", async () => {
    const held = new HeldReviewer({ "tok-a": { username: "tenant-a" } }, { "tenant-a": ["team-a"] });
    const small = await listenUsageApi({ address: "127.0.0.1:0", queries: store.queries, auth: new ApiAuth(held, { audiences: [], cacheTtlMs: 0 }), log: createLogger({ sink: () => {} }), maxInFlight: 2, now: () => NOW });
    try {
      const ask = (token: string): Promise<Reply> => get(VIEWS[0]!, as(token), "GET", small.port);
      const first = [ask("flood-1"), ask("flood-2")];
      await vi.waitFor(() => {
        expect(held.waiting).toBe(2);
      });
      const third = await ask("flood-3");
      expect(third.status).toBe(503);
      expect(third.headers["retry-after"]).toBe("1");
      held.releaseAll();
      expect((await Promise.all(first)).map((r) => r.status)).toEqual([401, 401]);
      const after = ask("tok-a");
      await vi.waitFor(() => {
        expect(held.waiting).toBe(1);
      });
      held.releaseAll();
      expect((await after).status).toBe(200);
    } finally {
      await small.stop();
    }
  });

  it("fails closed with 503 when the apiserver cannot review the caller", async () => {
    reviewer.failing = true;
    const r = await get(VIEWS[0]!, as("tok-a"));
    expect(r.status).toBe(503);
    expect(r.body.items).toBeUndefined();
    expect(logLines.join("\n")).not.toContain("tok-a");
  });
});

describe("usage API scope", () => {
  it("answers each view for tenant A from team-a only, exactly as the store does for that namespace", async () => {
    for (const path of VIEWS) {
      const r = await get(path, as("tok-a"));
      expect(r.status, path).toBe(200);
      expect(r.body.namespaces).toEqual(["team-a"]);
      expect(r.body.items?.length, path).toBeGreaterThan(0);
      const url = new URL(path, "http://x");
      const f = { since: NOW - 45 * DAY, until: NOW, namespaces: ["team-a"] };
      const view = url.pathname.split("/").pop();
      const expected =
        view === "keys"
          ? await store.queries.topKeys(f)
          : view === "status-codes"
            ? await store.queries.statusCodes(f)
            : view === "endpoints"
              ? await store.queries.endpoints(f, url.searchParams.get("by") === "path" ? "path" : "route")
              : view === "countries"
                ? await store.queries.countries(f)
                : await store.queries.networks(f);
      expect(r.body.items, path).toEqual(expected);
    }
    const keys = await get(VIEWS[0]!, as("tok-a"));
    expect(keys.body.items?.map((k) => k.name).sort()).toEqual(["checkout", "search"]);
  });

  it("answers one key's timeline by namespace/name and by key id, hourly and daily", async () => {
    const hourly = await get(`/api/v1/timeline?key=team-a/checkout&since=48h&until=${new Date(NOW).toISOString()}`, as("tok-a"));
    expect(hourly.status).toBe(200);
    expect(hourly.body.items?.length).toBeGreaterThan(0);
    const daily = await get(`/api/v1/timeline?key=kw_chk00001&step=day&${range}`, as("tok-a"));
    expect(daily.status).toBe(200);
    expect(daily.body.items).toEqual(await store.queries.timeline({ since: NOW - 45 * DAY, until: NOW, key: "kw_chk00001", namespaces: ["team-a"] }, "day"));
  });

  it("answers 403 alike for another tenant's namespace or key, and for one that does not exist", async () => {
    const denied = [
      `/api/v1/keys?namespace=team-b`,
      `/api/v1/keys?key=team-b/billing`,
      `/api/v1/keys?key=team-b/never-existed`,
      `/api/v1/keys?namespace=no-such-namespace`,
      `/api/v1/timeline?key=kw_bill0001&${range}`,
      `/api/v1/timeline?key=kw_nosuchkey&${range}`,
    ];
    const bodies = new Set<string>();
    for (const path of denied) {
      const r = await get(path, as("tok-a"));
      expect(r.status, path).toBe(403);
      bodies.add(JSON.stringify(r.body));
    }
    expect(bodies.size).toBe(1);
    // Tenant B may read its own.
    expect((await get(`/api/v1/keys?key=team-b/billing&${range}`, as("tok-b"))).body.items).toMatchObject([{ namespace: "team-b", name: "billing" }]);
  });

  it("gives a cluster-wide reader every namespace, and a caller who may read none an empty answer", async () => {
    const all = await get(VIEWS[0]!, as("tok-admin"));
    expect(all.body.namespaces).toBe("all");
    expect(new Set(all.body.items?.map((k) => k.namespace))).toEqual(new Set(["team-a", "team-b"]));
    const none = await get(VIEWS[0]!, as("tok-none"));
    expect(none.status).toBe(200);
    expect(none.body).toMatchObject({ namespaces: [], items: [] });
  });

  it("filters by owner and selector within the caller's namespaces", async () => {
    const r = await get(`/api/v1/keys?owner=alice&selector=tier%3Dgold&${range}`, as("tok-admin"));
    expect(r.body.items?.map((k) => `${String(k.namespace)}/${String(k.name)}`)).toEqual(["team-a/checkout"]);
    const b = await get(`/api/v1/keys?owner=alice&${range}`, as("tok-b"));
    expect(b.body.items?.map((k) => k.name)).toEqual(["billing"]);
  });
});

describe("usage API validation", () => {
  const cases: [string, number, RegExp][] = [
    ["/api/v1/keys?nope=1", 400, /unknown query parameter "nope"/],
    ["/api/v1/keys?owner=a&owner=b", 400, /more than once/],
    ["/api/v1/keys?limit=0", 400, /limit/],
    ["/api/v1/keys?limit=1001", 400, /limit/],
    ["/api/v1/keys?limit=5x", 400, /limit/],
    ["/api/v1/keys?since=yesterday", 400, /since: "yesterday" is not a time/],
    ["/api/v1/keys?since=2026-06-02&until=2026-06-01", 400, /since must be before until/],
    ["/api/v1/keys?selector=a%3D%3D%3Db", 400, /selector/],
    ["/api/v1/keys?namespace=Team_A", 400, /namespace/],
    ["/api/v1/keys?key=a/b/c", 400, /key/],
    ["/api/v1/keys?namespace=team-a&key=team-b/billing", 400, /not in namespace/],
    ["/api/v1/keys?owner=", 400, /empty/],
    ["/api/v1/keys?step=day", 400, /unknown query parameter "step"/],
    ["/api/v1/timeline", 400, /timeline needs key/],
    ["/api/v1/timeline?key=team-a/checkout&step=week", 400, /step/],
    ["/api/v1/endpoints?by=host", 400, /by/],
    ["/api/v1/secrets", 404, /no such view/],
    ["/metrics", 404, /no such path/],
  ];
  for (const [path, status, message] of cases) {
    it(`${path}: ${status}`, async () => {
      const r = await get(path, as("tok-a"));
      expect(r.status).toBe(status);
      expect(r.body.error).toMatch(message);
    });
  }

  it("answers only GET", async () => {
    const r = await get(VIEWS[0]!, as("tok-a"), "POST");
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe("GET");
  });

  it("reads times as RFC 3339, dates and durations before now, and defaults to the last 24 hours", async () => {
    const r = await get("/api/v1/keys", as("tok-a"));
    expect(r.body).toMatchObject({ since: new Date(NOW - DAY).toISOString(), until: new Date(NOW).toISOString() });
    const d = await get("/api/v1/keys?since=2026-06-01&until=90m", as("tok-a"));
    expect(d.body).toMatchObject({ since: "2026-06-01T00:00:00.000Z", until: new Date(NOW - 90 * 60_000).toISOString() });
    const z = await get("/api/v1/keys?since=2026-06-01T02:00:00%2B02:00", as("tok-a"));
    expect(z.body.since).toBe("2026-06-01T00:00:00.000Z");
  });
});

describe("startUsageApi", () => {
  it("needs an analytics store", () => {
    expect(() => loadConfig(["--usage-api-address=:9004", "--analytics-store=off"], {})).toThrow(/needs --analytics-store sqlite or postgres/);
    expect(loadConfig(["--usage-api-address=:9004"], {}).config.usageApiAddress).toBe(":9004");
  });

  it("serves HTTPS with --tls-cert-file, asking no client certificate even where the check ports require one", async () => {
    const certs = await certDir();
    try {
      const ca = await certs.ca("ca");
      const server = await ca.server("usage-api");
      const config = defaultConfig({ usageApiAddress: "127.0.0.1:0", tlsCertFile: server.cert, tlsKeyFile: server.key, tlsClientCaFile: ca.cert, tlsRequireClientCert: true });
      const tlsApi = await startUsageApi({ config, rest: {} as KubeRest, queries: store.queries, log: createLogger({ sink: () => {} }), reviewer });
      try {
        const caPem = await readFile(ca.cert);
        const status = await new Promise<number>((resolve, reject) => {
          const req = httpsRequest({ host: "127.0.0.1", port: tlsApi.port, path: "/api/v1/keys", ca: caPem, headers: as("tok-a") }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          req.on("error", reject);
          req.end();
        });
        expect(status).toBe(200);
      } finally {
        await tlsApi.stop();
      }
    } finally {
      await certs.remove();
    }
  });
});
