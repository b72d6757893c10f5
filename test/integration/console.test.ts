// The console on the real stack, in headless Chromium: the test control plane, the operator
// issuing the keys, a keyward data plane serving the usage API over a seeded SQLite analytics
// store, and `keyward console --usage-url` run as a tenant (a ServiceAccount that may get
// apikeys in its own namespace only). Each page shows the seeded figures; filters change what
// is shown; the other tenant's key never reaches the page; disabling a key shows on the open
// page at the next poll; no page logs an error or fails a request. Screenshots of each page
// land in test-results/console/.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import type { Browser } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RequestRow } from "../../src/analytics/row.ts";
import { keyRecordOf } from "../../src/analytics/rows.ts";
import { openAnalyticsStore } from "../../src/analytics/store.ts";
import type { ApiKey } from "../../src/api/types.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { createLogger } from "../../src/log.ts";
import { freePort } from "../controlplane/controlplane.ts";
import { attrs, count, inPage, launchBrowser, openPage, screenshot, tableText, text, visit, type WatchedPage } from "../support/browser.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { startKeyward, type KeywardProcess } from "../support/keyward.ts";
import { apiKeyPath, getApiKey, patchApiKey, startTestOperator, type TestOperator } from "../support/operator.ts";
import { tokenKubeConfig, usageApiDataPlaneKubeConfig } from "../support/rbac.ts";

const HOUR = 3_600_000;
const DAY = 86_400_000;
const log = createLogger({ level: "warn", sink: () => {} });

let adminKc: KubeConfig;
let admin: KubeRest;
let operator: TestOperator;
let dataPlane: KeywardProcess;
let consoleProc: KeywardProcess;
let browser: Browser;
let w: WatchedPage;
let dir: string;
let nsA: string;
let nsB: string;
let base: string;
/** Seeded requests of each of tenant A's keys in the last 24 hours, by name. */
const seeded: Record<string, { allowed: number; forbidden: number; limited: number }> = {
  checkout: { allowed: 90, forbidden: 6, limited: 4 },
  reports: { allowed: 25, forbidden: 0, limited: 0 },
  legacy: { allowed: 0, forbidden: 0, limited: 0 },
};

/** A ServiceAccount `reader` in `ns` that may get apikeys there and nothing else. */
async function tenantReader(ns: string): Promise<void> {
  await admin.request("POST", `/api/v1/namespaces/${ns}/serviceaccounts`, { body: { metadata: { name: "reader" } } });
  await admin.request("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
    body: { metadata: { name: "apikey-reader" }, rules: [{ apiGroups: ["keyward.dev"], resources: ["apikeys"], verbs: ["get"] }] },
  });
  await admin.request("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    body: { metadata: { name: "apikey-reader" }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "apikey-reader" }, subjects: [{ kind: "ServiceAccount", name: "reader", namespace: ns }] },
  });
}

/** Creates an ApiKey and waits for the operator to issue it; the issued ApiKey. */
async function issuedKey(ns: string, name: string, owner: string, labels: Record<string, string>, scopes: string[]): Promise<ApiKey> {
  await admin.request("POST", apiKeyPath(ns), { body: { apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { name, namespace: ns, labels }, spec: { owner, scopes } } });
  return eventually(async () => {
    const k = await getApiKey(admin, ns, name);
    return k?.status?.state === "Active" && k.status.currentKeyId ? k : undefined;
  }, 60_000, `${ns}/${name} issued`);
}

/** Request rows of one key over the last 20 hours: allowed ones on two routes, then refusals. */
function rowsOf(k: ApiKey, counts: { allowed: number; forbidden: number; limited: number }, now: number): RequestRow[] {
  const rows: RequestRow[] = [];
  const kinds = [...Array<"allowed">(counts.allowed).fill("allowed"), ...Array<"forbidden">(counts.forbidden).fill("forbidden"), ...Array<"limited">(counts.limited).fill("limited")];
  kinds.forEach((kind, i) => {
    const route = i % 3 === 0 ? "POST /orders" : "GET /orders/*";
    rows.push({
      at: now - HOUR - (i % 20) * HOUR - i * 1000,
      uid: k.metadata.uid ?? "",
      keyId: k.status?.currentKeyId ?? "",
      front: "grpc",
      route,
      policy: `${k.metadata.namespace}/api`,
      rule: "orders",
      method: route.split(" ")[0],
      host: "api.example.com",
      path: route === "POST /orders" ? "/orders" : `/orders/${String(i)}`,
      outcome: kind,
      reason: kind === "forbidden" ? "scope_missing" : kind === "limited" ? "rate_limited" : "allowed",
      status: kind === "forbidden" ? 403 : kind === "limited" ? 429 : 200,
      source: "203.0.113.7",
      network: "203.0.113.0/24",
      country: "DE",
      checkMicros: 120 + (i % 7),
      ...(kind === "allowed" ? { upstreamStatus: i % 10 === 0 ? 503 : 200, upstreamMicros: 4000 + i, requestBytes: 100, responseBytes: 900 } : {}),
    });
  });
  return rows;
}

beforeAll(async () => {
  adminKc = loadKubeConfig(inject("kubeconfig"));
  admin = new KubeRest(adminKc, { qps: 0 });
  dir = mkdtempSync(join(tmpdir(), "keyward-console-"));
  nsA = await createTestNamespace(adminKc, "console-a");
  nsB = await createTestNamespace(adminKc, "console-b");
  operator = await startTestOperator(adminKc, { namespaces: [nsA, nsB] });
  const keys = [
    await issuedKey(nsA, "checkout", "payments", { tier: "gold", app: "shop" }, ["orders:read", "orders:write"]),
    await issuedKey(nsA, "reports", "analytics", { tier: "free", app: "bi" }, ["orders:read"]),
    await issuedKey(nsA, "legacy", "payments", { tier: "free" }, ["orders:read"]),
    await issuedKey(nsB, "other-tenant-secret", "rivals", { tier: "gold" }, ["orders:read"]),
  ];
  await tenantReader(nsA);

  const file = join(dir, "analytics.sqlite");
  const store = await openAnalyticsStore({ store: "sqlite", sqlitePath: file, postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0 }, log);
  const now = Date.now();
  await store.upsertKeys(keys.flatMap((k) => keyRecordOf(k) ?? []));
  await store.writeRequests(keys.flatMap((k) => rowsOf(k, seeded[k.metadata.name] ?? { allowed: 40, forbidden: 3, limited: 0 }, now)));
  await store.close();

  const dpKc = await usageApiDataPlaneKubeConfig(adminKc);
  writeFileSync(join(dir, "data-plane.kubeconfig"), dpKc.exportConfig(), { mode: 0o600 });
  const [grpcPort, metricsPort, usagePort, consolePort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  dataPlane = startKeyward([
    "authz",
    `--kubeconfig=${join(dir, "data-plane.kubeconfig")}`,
    `--namespaces=${nsA},${nsB}`,
    `--grpc-address=127.0.0.1:${String(grpcPort)}`,
    "--http-auth-address=",
    `--metrics-address=127.0.0.1:${String(metricsPort)}`,
    "--usage-status=false",
    "--usage-alerts=false",
    "--analytics-store=sqlite",
    `--analytics-sqlite-path=${file}`,
    `--usage-api-address=127.0.0.1:${String(usagePort)}`,
    "--usage-api-cache-ttl=0",
  ]);
  await dataPlane.ready(metricsPort);

  const tenantKc = await tokenKubeConfig(adminKc, admin, { namespace: nsA, name: "reader" });
  writeFileSync(join(dir, "tenant.kubeconfig"), tenantKc.exportConfig(), { mode: 0o600 });
  consoleProc = startKeyward(["console", `--usage-url=http://127.0.0.1:${String(usagePort)}`, "--no-open", `--kubeconfig=${join(dir, "tenant.kubeconfig")}`, `--port=${String(consolePort)}`]);
  base = await eventually(() => /http:\/\/127\.0\.0\.1:\d+\/\?\S+/.exec(consoleProc.output())?.[0], 30_000, "the console's URL");

  browser = await launchBrowser();
  w = await openPage(browser);
  // the printed URL sets the session cookie and drops its secret from the address
  await visit(w.page, base);
  expect(new URL(w.page.url()).search).toBe("");
}, 300_000);

afterAll(async () => {
  await browser.close();
  await consoleProc.kill();
  await dataPlane.kill();
  await operator.stop();
  await deleteNamespace(adminKc, nsA);
  await deleteNamespace(adminKc, nsB);
  admin.close();
  rmSync(dir, { recursive: true, force: true });
});

const root = (): string => new URL("/", base).toString();

describe("the console on the real stack, as a tenant", () => {
  it("lists the tenant's keys with their seeded requests, and nothing of the other namespace", async () => {
    await visit(w.page, `${root()}?refresh=0`);
    const rows = await tableText(w.page, "table.windowed");
    expect(rows.map((r) => [r[0], r[1], r[2], r[6]])).toEqual([
      [`${nsA}/checkout`, "Active", "payments", "100"],
      [`${nsA}/legacy`, "Active", "payments", "0"],
      [`${nsA}/reports`, "Active", "analytics", "25"],
    ]);
    expect(await text(w.page, "#summary")).toBe("3 keys.");
    expect(await inPage<string>(w.page, "document.documentElement.outerHTML")).not.toContain("other-tenant-secret");
    expect(await inPage<string>(w.page, "document.documentElement.outerHTML")).not.toContain(nsB);
    await screenshot(w.page, "keys");
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("filters by label selector and owner, from the URL", async () => {
    await visit(w.page, `${root()}?selector=tier%3Dfree&refresh=0`);
    expect((await tableText(w.page, "table.windowed")).map((r) => r[0])).toEqual([`${nsA}/legacy`, `${nsA}/reports`]);
    await visit(w.page, `${root()}?owner=payments&refresh=0`);
    expect((await tableText(w.page, "table.windowed")).map((r) => r[0])).toEqual([`${nsA}/checkout`, `${nsA}/legacy`]);
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("refuses the other tenant's namespace with a readable message and shows none of it", async () => {
    await visit(w.page, `${root()}?namespace=${nsB}&refresh=0`);
    expect(await text(w.page, "#error")).toMatch(/^Not allowed: you may not get ApiKeys where this page reads/);
    expect(await count(w.page, "table.windowed tbody tr:not(.spacer)")).toBe(0);
    expect(await inPage<string>(w.page, "document.body.innerText")).not.toContain("other-tenant-secret");
    await visit(w.page, `${root()}?view=key&key=${nsB}/other-tenant-secret&refresh=0`);
    expect(await text(w.page, "#error")).toMatch(/^Not allowed/);
    expect(await count(w.page, "#endpoints tr")).toBe(0);
    // The key view asks for its views at once and shows the first refusal: let the others be
    // refused too before counting, so none of them lands in the next test's problems.
    await w.page.waitForNetworkIdle({ idleTime: 250, timeout: 15_000 });
    const refused = w.problems.splice(0);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((p) => / 403/.test(p) || /status of 403/.test(p))).toBe(true);
  });

  it("shows one key: versions, traffic by outcome, endpoints, places and denials", async () => {
    await visit(w.page, `${root()}?view=key&key=${nsA}/checkout&refresh=0`);
    expect(await text(w.page, "h1")).toBe(`Key ${nsA}/checkout`);
    const versions = await tableText(w.page, "#versions");
    expect(versions.map((r) => r[1])).toEqual(["active"]);
    const outcomes = await tableText(w.page, "#chart-outcomes details");
    const sum = (col: number): number => outcomes.reduce((a, r) => a + Number((r[col] ?? "0").replace(/,/g, "").replace("—", "0")), 0);
    // Columns: time, allowed, then keyward's refusals by status: 401, 403, 429 (the seed refuses with 403 and 429).
    expect(sum(1)).toBe(seeded.checkout!.allowed);
    expect(sum(2)).toBe(0);
    expect(sum(3)).toBeGreaterThan(0);
    expect(sum(4)).toBeGreaterThan(0);
    expect(sum(1) + sum(2) + sum(3) + sum(4)).toBe(100);
    expect(await count(w.page, "figure canvas")).toBe(3);
    const endpoints = await tableText(w.page, "#endpoints");
    expect(endpoints.map((r) => [r[0], r[1]])).toEqual([["GET /orders/*", "66"], ["POST /orders", "34"]]);
    expect((await tableText(w.page, "#countries"))[0]).toEqual(["DE", "100"]);
    expect((await tableText(w.page, "#networks"))[0]?.slice(0, 2)).toEqual(["203.0.113.0/24", "100"]);
    const denials = await tableText(w.page, "#denials");
    expect(denials.length).toBe(10);
    expect(new Set(denials.map((r) => `${r[1] ?? ""} ${r[2] ?? ""}`))).toEqual(new Set(["403 scope_missing", "429 rate_limited"]));
    await screenshot(w.page, "key");
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("shows the alerts and the access review of the tenant's keys", async () => {
    await visit(w.page, `${root()}?view=alerts&refresh=0`);
    expect(await text(w.page, "#firing")).toBe("No alert is firing.");
    await screenshot(w.page, "alerts");
    await visit(w.page, `${root()}?view=review&refresh=0`);
    expect(await text(w.page, "#review-summary")).toMatch(/^3 keys reviewed/);
    expect(await inPage<string>(w.page, "document.body.innerText")).not.toContain("other-tenant-secret");
    expect(await attrs(w.page, "#csv", "aria-disabled")).toEqual([null]);
    await screenshot(w.page, "review");
    expect(w.problems.splice(0)).toEqual([]);
  });

  it("shows a key disabled on the open page at the next poll", async () => {
    await visit(w.page, `${root()}?refresh=1`);
    const stateOf = async (): Promise<string | undefined> => (await tableText(w.page, "table.windowed")).find((r) => r[0] === `${nsA}/reports`)?.[1];
    expect(await stateOf()).toBe("Active");
    const before = w.requests.length;
    await patchApiKey(admin, nsA, "reports", { spec: { disabled: true } });
    await eventually(async () => ((await stateOf()) === "Disabled" ? true : undefined), 30_000, "Disabled on the page");
    expect(w.requests.length).toBeGreaterThan(before);
    expect(await text(w.page, "#updated")).toMatch(/^updated \d\d:\d\d:\d\d$/);
    expect(w.problems.splice(0)).toEqual([]);
  });
});
