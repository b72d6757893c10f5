import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openAnalyticsStore, type AnalyticsStore } from "../analytics/store.ts";
import { createLogger } from "../log.ts";
import { DAY, KEYS, NOW, seedRows } from "../../test/support/analytics-seed.ts";
import { VIEWS_PREFIX } from "../api/usage-group.ts";
import { aggregatedRoute } from "./aggregated.ts";
import { ApiAuth } from "./api-auth.ts";
import { FakeReviewer } from "./api-fixtures.test-support.ts";
import { listenUsageApi, type UsageApi } from "./api.ts";

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

let store: AnalyticsStore;
let api: UsageApi;

function get(path: string, token = "tok-a"): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: api.port, path, headers: { authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown> });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

beforeAll(async () => {
  const log = createLogger({ sink: () => {} });
  store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW }, log);
  await store.upsertKeys(KEYS);
  await store.writeRequests(seedRows());
  const reviewer = new FakeReviewer({ "tok-a": { username: "tenant-a" }, "tok-admin": { username: "admin" } }, { "tenant-a": ["team-a"], admin: [""] });
  api = await listenUsageApi({ address: "127.0.0.1:0", queries: store.queries, auth: new ApiAuth(reviewer, { audiences: [], cacheTtlMs: 0 }), log, now: () => NOW });
});

afterAll(async () => {
  await api.stop();
  await store.close();
});

const range = `since=${new Date(NOW - 45 * DAY).toISOString()}&until=${new Date(NOW).toISOString()}`;

describe("the aggregated API's paths", () => {
  it("map every name under views/ to the usage API's path of that name, known or not", () => {
    expect(aggregatedRoute(`${VIEWS_PREFIX}/keys`)).toEqual({ pathname: "/api/v1/keys" });
    expect(aggregatedRoute(`${VIEWS_PREFIX}/a-view-added-later`)).toEqual({ pathname: "/api/v1/a-view-added-later" });
    expect(aggregatedRoute(VIEWS_PREFIX)).toEqual({ pathname: "/api/v1/" });
    expect(aggregatedRoute("/apis/usage.keyward.dev/v1alpha1/other/keys")).toBeUndefined();
    expect(aggregatedRoute("/apis/other.example.com/v1")).toBeUndefined();
  });

  it("answer exactly what /api/v1/<view> answers: the same statuses and bodies, errors included", async () => {
    const queries = [
      `keys?${range}`,
      `keys?namespace=team-a&limit=1&${range}`,
      `timeline?key=team-a/checkout&step=day&${range}`,
      `status-codes?${range}`,
      `endpoints?by=path&${range}`,
      `countries?${range}`,
      `networks?${range}`,
      "keys?namespace=team-b",
      "keys?nope=1",
      "timeline",
      "no-such-view",
      "",
    ];
    for (const q of queries) {
      for (const token of ["tok-a", "tok-admin", "unknown"]) {
        const direct = await get(`/api/v1/${q}`, token);
        const aggregated = await get(`${VIEWS_PREFIX}/${q}`, token);
        expect(aggregated, `${q} as ${token}`).toEqual(direct);
      }
    }
    expect((await get(`${VIEWS_PREFIX}/keys?${range}`)).body).toMatchObject({ view: "keys", namespaces: ["team-a"] });
    expect((await get(`${VIEWS_PREFIX}/keys?namespace=team-b`)).status).toBe(403);
  });

  it("serve the discovery documents the aggregator reads, to any authenticated caller", async () => {
    const list = await get("/apis");
    expect(list).toMatchObject({ status: 200, body: { kind: "APIGroupList", groups: [{ name: "usage.keyward.dev", preferredVersion: { groupVersion: "usage.keyward.dev/v1alpha1" } }] } });
    expect((await get("/apis/usage.keyward.dev")).body).toMatchObject({ kind: "APIGroup", name: "usage.keyward.dev", versions: [{ version: "v1alpha1" }] });
    const resources = await get("/apis/usage.keyward.dev/v1alpha1");
    expect(resources).toMatchObject({
      status: 200,
      body: { kind: "APIResourceList", apiVersion: "v1", groupVersion: "usage.keyward.dev/v1alpha1", resources: [{ name: "views", namespaced: false, kind: "View", verbs: ["get"] }] },
    });
    expect((await get("/apis/usage.keyward.dev/v1alpha1/")).status).toBe(200);
    expect((await get("/apis/usage.keyward.dev/v1alpha1", "unknown")).status).toBe(401);
    expect((await get("/apis/other.example.com")).status).toBe(404);
  });
});
