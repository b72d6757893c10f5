// The viewer Role of config/rbac/tenant/viewer-role.yaml on the real apiserver: a
// ServiceAccount bound to it alone in namespace A lists and watches A's ApiKeys, reads
// their status and Events, and reads A's usage through the usage API and the hosted
// console (reviewed by the data plane with its shipped RBAC); it is refused every Secret,
// every write, and everything of namespace B, where the same Role exists but binds
// somebody else.
import { request } from "node:http";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { openAnalyticsStore, type AnalyticsStore } from "../../src/analytics/store.ts";
import { defaultConfig } from "../../src/config/config.ts";
import { applyObjects, parseManifests } from "../../src/k8s/apply.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeApiError, KubeRest } from "../../src/k8s/rest.ts";
import { createLogger } from "../../src/log.ts";
import { startUsageApi, type UsageApi } from "../../src/usage/api.ts";
import { DAY, keysIn, NOW, seedRows } from "../support/analytics-seed.ts";
import { createTestNamespace, deleteNamespace } from "../support/k8s.ts";
import { tokenKubeConfig, usageApiDataPlaneKubeConfig } from "../support/rbac.ts";

const root = resolve(import.meta.dirname, "..", "..");
const log = createLogger({ level: "warn", sink: () => undefined });
let adminKc: KubeConfig;
let admin: KubeRest;
let viewer: KubeRest;
let viewerToken = "";
let dataPlane: KubeRest;
let store: AnalyticsStore;
let api: UsageApi;
let nsA: string;
let nsB: string;

const range = `since=${new Date(NOW - 45 * DAY).toISOString()}&until=${new Date(NOW).toISOString()}`;

interface Reply {
  status: number;
  body: { namespaces?: string[] | "all"; items?: Record<string, unknown>[]; total?: number };
}

function get(port: number, path: string, token: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers: { authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, body: text.startsWith("{") ? (JSON.parse(text) as Reply["body"]) : {} });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** The HTTP status the apiserver answers the viewer with. */
const statusOf = (p: Promise<unknown>): Promise<number> =>
  p.then(
    () => 200,
    (err: unknown) => {
      if (err instanceof KubeApiError) return err.status;
      throw err;
    },
  );

/** Whether the apiserver's authorizer lets the viewer do `verb` on `resource` in `namespace`. */
async function may(verb: string, group: string, resource: string, namespace: string, subresource?: string): Promise<boolean> {
  const r = await viewer.request<{ status: { allowed: boolean } }>("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
    body: { apiVersion: "authorization.k8s.io/v1", kind: "SelfSubjectAccessReview", spec: { resourceAttributes: { verb, group, resource, namespace, ...(subresource ? { subresource } : {}) } } },
  });
  return r.status.allowed;
}

const apiKey = (name: string): KubernetesObject => ({ apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { name }, spec: { owner: "acme", scopes: ["orders:read"] } }) as KubernetesObject;

beforeAll(async () => {
  adminKc = loadKubeConfig(inject("kubeconfig"));
  admin = new KubeRest(adminKc, { qps: 0 });
  nsA = await createTestNamespace(adminKc, "viewer-a");
  nsB = await createTestNamespace(adminKc, "viewer-b");
  const role = parseManifests(readFileSync(join(root, "config/rbac/tenant/viewer-role.yaml"), "utf8"), "viewer-role.yaml");
  for (const ns of [nsA, nsB]) {
    await applyObjects(admin, [...role, { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "viewer" } }], { namespace: ns });
    await applyObjects(admin, [apiKey("checkout"), { apiVersion: "v1", kind: "Secret", metadata: { name: "checkout-apikey" }, stringData: { key: "not-a-key" } } as KubernetesObject], { namespace: ns });
    await admin.request("POST", `/api/v1/namespaces/${ns}/events`, {
      body: { metadata: { name: "checkout.viewer" }, involvedObject: { apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", name: "checkout", namespace: ns }, reason: "Issued", message: "key issued", type: "Normal" },
    });
    // In each namespace the Role binds that namespace's viewer only: A's viewer holds nothing in B.
    await applyObjects(
      admin,
      [{ apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name: "viewer" }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "keyward-viewer" }, subjects: [{ kind: "ServiceAccount", name: "viewer", namespace: ns }] } as KubernetesObject],
      { namespace: ns },
    );
  }
  const viewerKc = await tokenKubeConfig(adminKc, admin, { namespace: nsA, name: "viewer" });
  viewerToken = viewerKc.getCurrentUser()?.token ?? "";
  viewer = new KubeRest(viewerKc, { qps: 0 });

  dataPlane = new KubeRest(await usageApiDataPlaneKubeConfig(adminKc), { qps: 0 });
  store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW }, log);
  await store.upsertKeys(keysIn(nsA, nsB));
  await store.writeRequests(seedRows());
  api = await startUsageApi({ config: defaultConfig({ usageApiAddress: "127.0.0.1:0", consoleAddress: "127.0.0.1:0", usageApiCacheTtl: 0 }), rest: dataPlane, queries: store.queries, log });
}, 120_000);

afterAll(async () => {
  await api.stop();
  await store.close();
  await deleteNamespace(adminKc, nsA);
  await deleteNamespace(adminKc, nsB);
  admin.close();
  viewer.close();
  dataPlane.close();
});

describe("the keyward-viewer Role", () => {
  it("lists and watches its namespace's ApiKeys, reads their status and Events", async () => {
    const keys = await viewer.request<{ items: KubernetesObject[] }>("GET", `/apis/keyward.dev/v1alpha1/namespaces/${nsA}/apikeys`);
    expect(keys.items.map((k) => k.metadata?.name)).toEqual(["checkout"]);
    await expect(viewer.request("GET", `/apis/keyward.dev/v1alpha1/namespaces/${nsA}/apikeys/checkout/status`)).resolves.toMatchObject({ metadata: { name: "checkout" } });
    const events = await viewer.request<{ items: { reason: string }[] }>("GET", `/api/v1/namespaces/${nsA}/events`);
    expect(events.items.map((e) => e.reason)).toContain("Issued");
    expect(await may("watch", "keyward.dev", "apikeys", nsA)).toBe(true);
    expect(await may("watch", "", "events", nsA)).toBe(true);
  });

  it("is refused every Secret of its namespace, by get, list and watch", async () => {
    expect(await statusOf(viewer.request("GET", `/api/v1/namespaces/${nsA}/secrets/checkout-apikey`))).toBe(403);
    expect(await statusOf(viewer.request("GET", `/api/v1/namespaces/${nsA}/secrets`))).toBe(403);
    for (const verb of ["get", "list", "watch"]) expect(await may(verb, "", "secrets", nsA), verb).toBe(false);
    // Nor through the rules the apiserver reports for it: no rule names Secrets or every resource.
    const rules = await viewer.request<{ status: { resourceRules: { resources: string[] }[] } }>("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", {
      body: { apiVersion: "authorization.k8s.io/v1", kind: "SelfSubjectRulesReview", spec: { namespace: nsA } },
    });
    expect(rules.status.resourceRules.flatMap((r) => r.resources).filter((r) => r === "*" || r.startsWith("secrets"))).toEqual([]);
  });

  it("changes nothing: no create, update, delete of ApiKeys, no status write, no Event", async () => {
    expect(await statusOf(viewer.request("POST", `/apis/keyward.dev/v1alpha1/namespaces/${nsA}/apikeys`, { body: apiKey("mine") }))).toBe(403);
    expect(await statusOf(viewer.request("DELETE", `/apis/keyward.dev/v1alpha1/namespaces/${nsA}/apikeys/checkout`))).toBe(403);
    for (const verb of ["create", "update", "patch", "delete"]) expect(await may(verb, "keyward.dev", "apikeys", nsA), verb).toBe(false);
    for (const verb of ["update", "patch"]) expect(await may(verb, "keyward.dev", "apikeys", nsA, "status"), `status ${verb}`).toBe(false);
    expect(await may("create", "", "events", nsA)).toBe(false);
  });

  it("sees nothing of another namespace: ApiKeys, Events, Secrets", async () => {
    for (const path of [`/apis/keyward.dev/v1alpha1/namespaces/${nsB}/apikeys`, `/apis/keyward.dev/v1alpha1/namespaces/${nsB}/apikeys/checkout`, `/api/v1/namespaces/${nsB}/events`, `/api/v1/namespaces/${nsB}/secrets/checkout-apikey`, "/apis/keyward.dev/v1alpha1/apikeys"]) {
      expect(await statusOf(viewer.request("GET", path)), path).toBe(403);
    }
  });

  it("reads its namespace's usage through the usage API and the console, and nothing of another namespace", async () => {
    for (const port of [api.port, api.consolePort ?? 0]) {
      for (const view of ["keys", "status-codes", "endpoints", "inventory"]) {
        const r = await get(port, `/api/v1/${view}?${range}`, viewerToken);
        expect(r.status, `${String(port)} ${view}`).toBe(200);
        expect(r.body.namespaces, view).toEqual([nsA]);
        expect(r.body.items?.length, view).toBeGreaterThan(0);
      }
      const keys = await get(port, `/api/v1/keys?${range}`, viewerToken);
      expect(new Set(keys.body.items?.map((k) => k.namespace))).toEqual(new Set([nsA]));
      for (const path of [`/api/v1/keys?namespace=${nsB}&${range}`, `/api/v1/keys?key=${nsB}/billing&${range}`, `/api/v1/timeline?key=kw_bill0001&${range}`, `/api/v1/inventory?namespace=${nsB}`]) {
        const r = await get(port, path, viewerToken);
        expect(r.status, path).toBe(403);
        expect(r.body.items).toBeUndefined();
      }
    }
  });
});
