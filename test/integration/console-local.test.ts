// `keyward console --usage-url` on the real apiserver: the usage API runs with the
// data plane's shipped RBAC and a seeded SQLite store; a tenant runs the console
// (the real command, a child process) with a kubeconfig holding their
// ServiceAccount's token. Through the local server the tenant sees their own
// namespace's keys only (an unchanged inventory as a 304); the other tenant's namespace and keys, the apiserver's
// other paths, requests without the session cookie and requests naming another
// host are refused.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { openAnalyticsStore, type AnalyticsStore } from "../../src/analytics/store.ts";
import { defaultConfig } from "../../src/config/config.ts";
import { send, type Reply } from "../../src/console/http.test-support.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { createLogger } from "../../src/log.ts";
import { startUsageApi, type UsageApi } from "../../src/usage/api.ts";
import { DAY, keysIn, NOW, seedRows } from "../support/analytics-seed.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { tokenKubeConfig, usageApiDataPlaneKubeConfig } from "../support/rbac.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");
const log = createLogger({ sink: () => {} });
let adminKc: KubeConfig;
let admin: KubeRest;
let dataPlane: KubeRest;
let store: AnalyticsStore;
let api: UsageApi;
let nsA: string;
let nsB: string;
let dir: string;
let child: ChildProcess;
let url: URL;
let cookie: string;

/** A ServiceAccount `reader` in `ns` that may get apikeys there, and nothing else. */
async function tenant(ns: string): Promise<void> {
  await admin.request("POST", `/api/v1/namespaces/${ns}/serviceaccounts`, { body: { metadata: { name: "reader" } } });
  await admin.request("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
    body: { metadata: { name: "apikey-reader" }, rules: [{ apiGroups: ["keyward.dev"], resources: ["apikeys"], verbs: ["get"] }] },
  });
  await admin.request("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    body: { metadata: { name: "apikey-reader" }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "apikey-reader" }, subjects: [{ kind: "ServiceAccount", name: "reader", namespace: ns }] },
  });
}

const viaConsole = (path: string, headers: Record<string, string> = {}): Promise<Reply> => send(Number(url.port), path, { cookie, ...headers });
const json = (r: Reply): { namespaces?: string[]; items?: Record<string, unknown>[]; error?: string } => JSON.parse(r.body) as { namespaces?: string[]; items?: Record<string, unknown>[]; error?: string };

beforeAll(async () => {
  adminKc = loadKubeConfig(inject("kubeconfig"));
  admin = new KubeRest(adminKc, { qps: 0 });
  nsA = await createTestNamespace(adminKc, "console-a");
  nsB = await createTestNamespace(adminKc, "console-b");
  await tenant(nsA);
  await tenant(nsB);
  const dataPlaneKc = await usageApiDataPlaneKubeConfig(adminKc);
  dataPlane = new KubeRest(dataPlaneKc, { qps: 0 });
  const keys = keysIn(nsA, nsB);
  store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW }, log);
  await store.upsertKeys(keys);
  await store.writeRequests(seedRows());
  api = await startUsageApi({ config: defaultConfig({ usageApiAddress: "127.0.0.1:0", usageApiCacheTtl: 0 }), rest: dataPlane, queries: store.queries, log });

  dir = mkdtempSync(join(tmpdir(), "keyward-console-it-"));
  const kubeconfig = join(dir, "tenant-a.kubeconfig");
  writeFileSync(kubeconfig, (await tokenKubeConfig(adminKc, admin, { namespace: nsA, name: "reader" })).exportConfig());
  child = spawn(process.execPath, [join(ROOT, "src/main.ts"), "console", "--no-open", "--kubeconfig", kubeconfig, "--usage-url", `http://127.0.0.1:${api.port}`], { cwd: ROOT, env: { ...process.env, KUBECONFIG: "" }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString("utf8")));
  const printed = await eventually(() => /Open (http:\/\/127\.0\.0\.1:\d+\/\?token=\S+)/.exec(out)?.[1], 30_000, "keyward console prints its URL");
  url = new URL(printed);
  const first = await send(Number(url.port), `${url.pathname}${url.search}`);
  expect(first.status).toBe(303);
  cookie = (first.headers["set-cookie"]?.[0] ?? "").split(";")[0] ?? "";
}, 120_000);

afterAll(async () => {
  child.kill("SIGINT");
  await api.stop();
  await store.close();
  await deleteNamespace(adminKc, nsA);
  await deleteNamespace(adminKc, nsB);
  admin.close();
  dataPlane.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("keyward console --usage-url with a tenant's kubeconfig", () => {
  it("serves the console page, and every view from the tenant's namespace only", async () => {
    const page = await viaConsole("/");
    expect(page.status).toBe(200);
    expect(page.body).toContain('<meta name="keyward-api-base" content="api/v1/">');
    const inventory = await viaConsole("/api/v1/inventory");
    expect(inventory.status).toBe(200);
    expect(json(inventory).namespaces).toEqual([nsA]);
    expect(json(inventory).items?.map((k) => `${String(k.namespace)}/${String(k.name)}`)).toEqual([`${nsA}/checkout`, `${nsA}/search`]);
    for (const view of ["keys?since=720h", "denials?since=720h", "alerts", "review", "key?key=kw_chk00001", "latency?key=kw_srch0001&since=48h"]) {
      const r = await viaConsole(`/api/v1/${view}`);
      expect(r.status, view).toBe(200);
      expect(r.body, view).not.toContain(nsB);
      expect(r.body, view).not.toContain("billing");
    }
  });

  it("relays the inventory's ETag, and the usage API's 304 for an If-None-Match that names it", async () => {
    const first = await viaConsole("/api/v1/inventory");
    const etag = first.headers.etag;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    const again = await viaConsole("/api/v1/inventory", { "if-none-match": String(etag) });
    expect(again).toMatchObject({ status: 304, body: "", headers: { etag } });
    // Another answer (another namespace filter) is sent whole whatever tag is held.
    expect((await viaConsole(`/api/v1/inventory?namespace=${nsA}&owner=alice`, { "if-none-match": String(etag) })).status).toBe(200);
  });

  it("refuses the other tenant's namespace and keys, by name or key id", async () => {
    for (const path of [`/api/v1/inventory?namespace=${nsB}`, `/api/v1/key?key=${nsB}/billing`, "/api/v1/key?key=kw_bill0001", `/api/v1/denials?namespace=${nsB}`]) {
      const r = await viaConsole(path);
      expect(r.status, path).toBe(403);
      expect(json(r).error).toMatch(/forbidden/);
    }
  });

  it("reaches nothing else, and nothing without the session cookie or at another host name", async () => {
    for (const path of ["/api/v1/secrets", `/api/v1/namespaces/${nsA}/secrets`, "/apis/keyward.dev/v1alpha1/apikeys", "/api/v1/keys/../../../api/v1/namespaces", "/version"]) {
      expect((await viaConsole(path)).status, path).toBe(404);
    }
    expect((await send(Number(url.port), "/api/v1/inventory")).status).toBe(401);
    expect((await send(Number(url.port), "/api/v1/inventory", { cookie }, "GET", `rebind.example:${url.port}`)).status).toBe(421);
    expect((await send(Number(url.port), "/api/v1/inventory", { cookie, "content-length": "0" }, "POST")).status).toBe(405);
  });
});
