// The usage API on the real apiserver: callers are ServiceAccounts with tokens from the
// TokenRequest API, reviewed by the data plane with its shipped RBAC
// (config/rbac/authz-*.yaml and config/rbac/usage-api/). Two tenants each get
// apikeys in their own namespace only; a third may get them cluster-wide. Every
// view answers tenant A from A's namespace alone; B's namespace or keys are 403;
// no token or a bad one is 401; forged identity headers change nothing; a token
// for another audience is refused when the API asks for its own; a revoked
// RoleBinding is honoured at the next request (cache TTL 0).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { openAnalyticsStore, type AnalyticsStore } from "../../src/analytics/store.ts";
import type { RequestRow } from "../../src/analytics/row.ts";
import { defaultConfig } from "../../src/config/config.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { createLogger } from "../../src/log.ts";
import { startUsageApi, type UsageApi } from "../../src/usage/api.ts";
import { DAY, keysIn, NOW, seedRows } from "../support/analytics-seed.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { freePort } from "../controlplane/controlplane.ts";
import { startKeyward } from "../support/keyward.ts";
import { usageApiDataPlaneKubeConfig } from "../support/rbac.ts";

interface Reply {
  status: number;
  body: { error?: string; namespaces?: string[] | "all"; items?: Record<string, unknown>[] };
}

const AUDIENCE = "keyward-usage-api";
const logLines: string[] = [];
const log = createLogger({ level: "debug", sink: (l) => logLines.push(l) });
let adminKc: KubeConfig;
let admin: KubeRest;
let dataPlane: KubeRest;
let dataPlaneKc: KubeConfig;
let store: AnalyticsStore;
let api: UsageApi;
let audienceApi: UsageApi;
let nsA: string;
let nsB: string;
const tokens: Record<"a" | "b" | "admin" | "aAudience", string> = { a: "", b: "", admin: "", aAudience: "" };
const clusterBinding = `usage-api-admin-${String(process.pid)}`;

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Reply["body"]) : {} });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

const bearer = (token: string, extra: Record<string, string> = {}): Record<string, string> => ({ authorization: `Bearer ${token}`, ...extra });
const range = `since=${new Date(NOW - 45 * DAY).toISOString()}&until=${new Date(NOW).toISOString()}`;
const VIEWS = ["keys", "status-codes", "endpoints", "endpoints?by=path", "countries", "networks", "timeline?step=day&key=kw_chk00001"];
const viewPath = (v: string): string => `/api/v1/${v}${v.includes("?") ? "&" : "?"}${range}`;

async function reader(ns: string, name: string, audiences?: string[]): Promise<string> {
  const tr = await admin.request<{ status: { token: string } }>("POST", `/api/v1/namespaces/${ns}/serviceaccounts/${name}/token`, {
    body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600, ...(audiences ? { audiences } : {}) } },
  });
  return tr.status.token;
}

/** A ServiceAccount `reader` in `ns` with a Role that may get apikeys there, and nothing else. */
async function tenant(ns: string): Promise<void> {
  await admin.request("POST", `/api/v1/namespaces/${ns}/serviceaccounts`, { body: { metadata: { name: "reader" } } });
  await admin.request("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
    body: { metadata: { name: "apikey-reader" }, rules: [{ apiGroups: ["keyward.dev"], resources: ["apikeys"], verbs: ["get"] }] },
  });
  await admin.request("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    body: {
      metadata: { name: "apikey-reader" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "apikey-reader" },
      subjects: [{ kind: "ServiceAccount", name: "reader", namespace: ns }],
    },
  });
}

beforeAll(async () => {
  adminKc = loadKubeConfig(inject("kubeconfig"));
  admin = new KubeRest(adminKc, { qps: 0 });
  nsA = await createTestNamespace(adminKc, "usage-api-a");
  nsB = await createTestNamespace(adminKc, "usage-api-b");
  await tenant(nsA);
  await tenant(nsB);
  await admin.request("POST", `/api/v1/namespaces/${nsA}/serviceaccounts`, { body: { metadata: { name: "platform" } } });
  await admin.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
    body: {
      metadata: { name: clusterBinding },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
      subjects: [{ kind: "ServiceAccount", name: "platform", namespace: nsA }],
    },
  });
  tokens.a = await reader(nsA, "reader");
  tokens.b = await reader(nsB, "reader");
  tokens.admin = await reader(nsA, "platform");
  tokens.aAudience = await reader(nsA, "reader", [AUDIENCE]);

  dataPlaneKc = await usageApiDataPlaneKubeConfig(adminKc);
  dataPlane = new KubeRest(dataPlaneKc, { qps: 0 });

  const keys = keysIn(nsA, nsB);
  store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW }, log);
  await store.upsertKeys(keys);
  const rows: RequestRow[] = seedRows();
  await store.writeRequests(rows);
  const config = defaultConfig({ usageApiAddress: "127.0.0.1:0", usageApiCacheTtl: 0 });
  api = await startUsageApi({ config, rest: dataPlane, queries: store.queries, log });
  audienceApi = await startUsageApi({ config: { ...config, usageApiAudiences: [AUDIENCE] }, rest: dataPlane, queries: store.queries, log });
}, 120_000);

afterAll(async () => {
  await api.stop();
  await audienceApi.stop();
  await store.close();
  await admin.request("DELETE", `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${clusterBinding}`).catch(() => undefined);
  await deleteNamespace(adminKc, nsA);
  await deleteNamespace(adminKc, nsB);
  admin.close();
  dataPlane.close();
});

describe("usage API on the apiserver", () => {
  it("answers tenant A in every view from A's namespace only", async () => {
    for (const v of VIEWS) {
      const r = await get(api.port, viewPath(v), bearer(tokens.a));
      expect(r.status, v).toBe(200);
      expect(r.body.namespaces, v).toEqual([nsA]);
      expect(r.body.items?.length, v).toBeGreaterThan(0);
    }
    const keys = await get(api.port, viewPath("keys"), bearer(tokens.a));
    expect(new Set(keys.body.items?.map((k) => k.namespace))).toEqual(new Set([nsA]));
    // The answers are the store's for A's namespace: B's requests are in none of them.
    const f = { since: NOW - 45 * DAY, until: NOW, namespaces: [nsA] };
    expect((await get(api.port, viewPath("status-codes"), bearer(tokens.a))).body.items).toEqual(await store.queries.statusCodes(f));
    expect((await get(api.port, viewPath("countries"), bearer(tokens.a))).body.items).toEqual(await store.queries.countries(f));
    expect((await get(api.port, viewPath("networks"), bearer(tokens.a))).body.items).toEqual(await store.queries.networks(f));
    const b = await get(api.port, viewPath("keys"), bearer(tokens.b));
    expect(b.body.items?.map((k) => `${String(k.namespace)}/${String(k.name)}`)).toEqual([`${nsB}/billing`]);
  });

  it("answers 403 when tenant A names B's namespace or one of B's keys", async () => {
    for (const path of [`/api/v1/keys?namespace=${nsB}`, `/api/v1/keys?key=${nsB}/billing`, `/api/v1/timeline?key=kw_bill0001&${range}`, `/api/v1/countries?namespace=${nsB}&${range}`]) {
      const r = await get(api.port, path, bearer(tokens.a));
      expect(r.status, path).toBe(403);
      expect(r.body.items).toBeUndefined();
    }
  });

  it("answers 401 without a token, with a token the apiserver does not know, and with identity headers alone", async () => {
    const forged = { "x-remote-user": "system:admin", "x-remote-group": "system:masters", "impersonate-user": "system:admin" };
    for (const headers of [{}, bearer("not-a-token"), bearer(`${tokens.a}x`), forged, bearer("a".repeat(9000))]) {
      const r = await get(api.port, viewPath("keys"), headers);
      expect(r.status).toBe(401);
    }
    // A tenant's token with forged headers stays that tenant.
    const r = await get(api.port, viewPath("keys"), bearer(tokens.a, forged));
    expect(r.body.namespaces).toEqual([nsA]);
  });

  it("gives a cluster-admin every namespace", async () => {
    const r = await get(api.port, viewPath("keys"), bearer(tokens.admin));
    expect(r.status).toBe(200);
    expect(r.body.namespaces).toBe("all");
    expect(new Set(r.body.items?.map((k) => k.namespace))).toEqual(new Set([nsA, nsB]));
    expect((await get(api.port, `/api/v1/keys?namespace=${nsB}&${range}`, bearer(tokens.admin))).status).toBe(200);
  });

  it("with --usage-api-audiences, takes only tokens issued for that audience", async () => {
    expect((await get(audienceApi.port, viewPath("keys"), bearer(tokens.a))).status).toBe(401);
    const r = await get(audienceApi.port, viewPath("keys"), bearer(tokens.aAudience));
    expect(r.status).toBe(200);
    expect(r.body.namespaces).toEqual([nsA]);
  });

  it("honours a revoked RoleBinding at the next request, and never logs a token", async () => {
    await admin.request("DELETE", `/apis/rbac.authorization.k8s.io/v1/namespaces/${nsB}/rolebindings/apikey-reader`);
    // RBAC changes reach the authorizer asynchronously: poll until the apiserver no longer allows it.
    await eventually(async () => ((await get(api.port, `/api/v1/keys?namespace=${nsB}&${range}`, bearer(tokens.b))).status === 403 ? true : undefined), 30_000, "B's access revoked");
    const r = await get(api.port, viewPath("keys"), bearer(tokens.b));
    expect(r.body).toMatchObject({ namespaces: [], items: [] });
    const logged = logLines.join("\n");
    for (const t of Object.values(tokens)) expect(logged).not.toContain(t);
  });
});

describe("keyward authz --usage-api-address", () => {
  it("serves the usage API from the data-plane process, next to its store, and stops with it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "keyward-usage-api-"));
    const kubeconfig = join(dir, "kubeconfig");
    writeFileSync(kubeconfig, dataPlaneKc.exportConfig(), { mode: 0o600 });
    const [apiPort, metricsPort] = [await freePort(), await freePort()];
    const kw = startKeyward([
      "authz",
      `--kubeconfig=${kubeconfig}`,
      `--namespaces=${nsA}`,
      "--grpc-address=127.0.0.1:0",
      "--http-auth-address=",
      `--metrics-address=127.0.0.1:${String(metricsPort)}`,
      "--analytics-store=sqlite",
      `--analytics-sqlite-path=${join(dir, "analytics.sqlite")}`,
      `--usage-api-address=127.0.0.1:${String(apiPort)}`,
    ]);
    try {
      await kw.ready(metricsPort);
      expect((await get(apiPort, "/api/v1/keys")).status).toBe(401);
      const r = await get(apiPort, `/api/v1/keys?namespace=${nsA}`, bearer(tokens.a));
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ namespaces: [nsA], items: [] });
      expect((await get(apiPort, `/api/v1/keys?namespace=${nsB}`, bearer(tokens.a))).status).toBe(403);
      kw.child.kill("SIGTERM");
      expect(await kw.exited).toBe(0);
      expect(kw.output()).toContain("usage API serving");
      for (const t of Object.values(tokens)) expect(kw.output()).not.toContain(t);
    } finally {
      await kw.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
