// The operator's Secret access against a real apiserver: it watches only the
// Secrets keyward labels, so other Secrets (many, or large) never enter its cache;
// it re-reads existingSecret references by name with metadata-only GETs; it puts
// back labels someone strips from its Secret; and it (and the data plane) run on
// namespaced Roles alone.
import { createHash } from "node:crypto";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ApiKey } from "../../src/api/types.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeApiError, KubeRest } from "../../src/k8s/rest.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { createApiKey, eventsFor, getApiKey, getSecret, ready, startTestOperator, type TestOperator } from "../support/operator.ts";
import { Registry } from "prom-client";
import { startAuthz } from "../../src/authz/service.ts";
import { defaultConfig } from "../../src/config/config.ts";
import { ReferencedSecrets } from "../../src/operator/referenced.ts";
import { createLogger } from "../../src/log.ts";
import { namespacedKubeConfig } from "../support/rbac.ts";

const UNRELATED = 300;
const LARGE = 8;
const LARGE_BYTES = 512 * 1024;

let kc: KubeConfig;
let rest: KubeRest;
let ns: string;
let other: string;
let opKc: KubeConfig;
let op: TestOperator;

const b64 = (s: string): string => Buffer.from(s).toString("base64");
const sha = (s: string): string => `sha256:${createHash("sha256").update(s).digest("hex")}`;
const activeHash = (ak: ApiKey | undefined): string | undefined => ak?.status?.keys?.find((k) => k.state === "active")?.hash;
const secretsPath = (namespace: string): string => `/api/v1/namespaces/${namespace}/secrets`;

async function metric(name: string, labels: Record<string, string>): Promise<number | undefined> {
  const m = await op.registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value;
}

const readyKey = (name: string): Promise<ApiKey> =>
  eventually(async () => {
    const ak = await getApiKey(rest, ns, name);
    return ready(ak) === "True" && ak?.status?.observedGeneration === ak?.metadata.generation ? ak : undefined;
  }, 20_000, `ApiKey ${name} Ready`);

/** Unrelated Secrets: small ones, large ones, and one that carries only half of keyward's labels. */
async function createUnrelated(namespace: string, prefix: string): Promise<void> {
  const big = b64("x".repeat(LARGE_BYTES));
  const bodies = [
    ...Array.from({ length: UNRELATED }, (_, i) => ({ metadata: { name: `${prefix}-${i}` }, data: { password: b64(`unrelated-${i}`) } })),
    ...Array.from({ length: LARGE }, (_, i) => ({ metadata: { name: `${prefix}-large-${i}` }, data: { blob: big } })),
    { metadata: { name: `${prefix}-half-labelled`, labels: { "app.kubernetes.io/managed-by": "keyward" } }, data: { x: b64("y") } },
  ];
  for (let i = 0; i < bodies.length; i += 25) {
    await Promise.all(bodies.slice(i, i + 25).map((body) => rest.request("POST", secretsPath(namespace), { body })));
  }
}

beforeAll(async () => {
  kc = loadKubeConfig(inject("kubeconfig"));
  rest = new KubeRest(kc, { qps: 0 });
  ns = await createTestNamespace(kc, "op-secrets");
  other = await createTestNamespace(kc, "op-secrets-other");
  // Namespaced Roles only, in the watched namespace, for a ServiceAccount no ClusterRoleBinding names.
  opKc = await namespacedKubeConfig(kc, "operator", [ns], `kw-op-${ns}`);
  await createUnrelated(ns, "before");
  op = await startTestOperator(opKc, { namespaces: [ns], existingSecretResync: 300 });
}, 120_000);

afterAll(async () => {
  await op.stop();
  await deleteNamespace(kc, ns);
  await deleteNamespace(kc, other);
  rest.close();
});

describe("the operator's Secret access", () => {
  it("caches only the Secrets keyward created, whatever else the namespace holds", async () => {
    for (const name of ["a", "b", "c"]) await createApiKey(rest, ns, name, { owner: "acme" });
    for (const name of ["a", "b", "c"]) await readyKey(name);
    await eventually(async () => ((await metric("keyward_operator_cached_secrets", { source: "managed" })) === 3 ? true : undefined), 10_000, "3 managed Secrets cached");
    // Secrets created while the operator runs arrive on no watch of its own either.
    await createUnrelated(ns, "after");
    await createApiKey(rest, ns, "d", { owner: "acme" });
    await readyKey("d");
    await eventually(async () => ((await metric("keyward_operator_cached_secrets", { source: "managed" })) === 4 ? true : undefined), 10_000, "4 managed Secrets cached");
    const all = await rest.request<{ items: unknown[] }>("GET", secretsPath(ns));
    expect(all.items.length).toBeGreaterThanOrEqual(2 * (UNRELATED + LARGE + 1) + 4);
    expect(await metric("keyward_operator_cached_secrets", { source: "managed" })).toBe(4);
    expect(await metric("keyward_operator_cached_secrets", { source: "referenced" })).toBe(0);
  });

  it("finds a Secret someone else created under the name, though it is not watched, and never overwrites it", async () => {
    await rest.request("POST", secretsPath(ns), { body: { metadata: { name: "taken-apikey" }, data: { "api-key": b64("someone else's value") } } });
    await createApiKey(rest, ns, "taken", { owner: "acme" });
    const ak = await eventually(async () => {
      const a = await getApiKey(rest, ns, "taken");
      return a?.status?.conditions?.find((c) => c.type === "Ready")?.reason === "SecretConflict" ? a : undefined;
    }, 20_000, "SecretConflict");
    expect(ak.status?.keys ?? []).toEqual([]);
    const s = await getSecret(rest, ns, "taken-apikey");
    expect(Buffer.from(s?.data?.["api-key"] ?? "", "base64").toString()).toBe("someone else's value");
  });

  it("reads an existingSecret by name, re-reads it with metadata-only GETs, and notices a change", async () => {
    const k1 = "byok-" + createHash("sha256").update("one").digest("base64url");
    const k2 = "byok-" + createHash("sha256").update("two").digest("base64url");
    await rest.request("POST", secretsPath(ns), { body: { metadata: { name: "vault-key" }, data: { token: b64(k1) } } });
    await createApiKey(rest, ns, "byok", { owner: "initech", existingSecret: { name: "vault-key", key: "token" } });
    expect(activeHash(await readyKey("byok"))).toBe(sha(k1));
    await eventually(async () => ((await metric("keyward_operator_cached_secrets", { source: "referenced" })) === 1 ? true : undefined), 10_000, "the referenced Secret's hashes");
    const full = (await metric("keyward_operator_secret_reads_total", { read: "full" })) ?? 0;
    const meta = (await metric("keyward_operator_secret_reads_total", { read: "metadata" })) ?? 0;
    // Several intervals pass: metadata-only reads, no further read of the data.
    await eventually(async () => (((await metric("keyward_operator_secret_reads_total", { read: "metadata" })) ?? 0) >= meta + 5 ? true : undefined), 10_000, "re-reads");
    expect(await metric("keyward_operator_secret_reads_total", { read: "full" })).toBe(full);
    expect(await metric("keyward_operator_secret_reads_total", { read: "error" })).toBeUndefined();
    await rest.request("PATCH", `${secretsPath(ns)}/vault-key`, { body: { data: { token: b64(k2) } }, contentType: "application/merge-patch+json" });
    const after = await eventually(async () => {
      const a = await getApiKey(rest, ns, "byok");
      return activeHash(a) === sha(k2) ? a : undefined;
    }, 10_000, "re-hash after the Secret changed");
    expect(after.status?.keys?.find((k) => k.state === "grace")?.hash).toBe(sha(k1));
    expect(await metric("keyward_operator_secret_reads_total", { read: "full" })).toBe(full + 1);
  });

  it("puts back the labels stripped from its Secret, so a later edit is still seen", async () => {
    await createApiKey(rest, ns, "strip", { owner: "acme" });
    const before = await readyKey("strip");
    await rest.request("PATCH", `${secretsPath(ns)}/strip-apikey`, {
      body: { metadata: { labels: { "app.kubernetes.io/managed-by": null, "keyward.dev/apikey": null } } },
      contentType: "application/merge-patch+json",
    });
    await eventually(async () => {
      const s = await getSecret(rest, ns, "strip-apikey");
      return s?.metadata.labels?.["keyward.dev/apikey"] === "strip" && s.metadata.labels["app.kubernetes.io/managed-by"] === "keyward" ? s : undefined;
    }, 10_000, "the labels back");
    expect(activeHash(await getApiKey(rest, ns, "strip"))).toBe(activeHash(before));
    await rest.request("PATCH", `${secretsPath(ns)}/strip-apikey`, {
      body: { data: { "api-key": b64("shop_" + "t".repeat(49)) } },
      contentType: "application/merge-patch+json",
    });
    await eventually(async () => ((await eventsFor(rest, ns, "strip")).some((e) => e.reason === "SecretTampered") ? true : undefined), 20_000, "SecretTampered");
  });

  it("works with namespaced Roles alone and reaches no other namespace", async () => {
    const opRest = new KubeRest(opKc, { qps: 0 });
    try {
      for (const path of ["/api/v1/secrets", secretsPath(other), `/apis/keyward.dev/v1alpha1/namespaces/${other}/apikeys`]) {
        const err = await opRest.request("GET", path).catch((e: unknown) => e);
        expect(err instanceof KubeApiError ? err.status : err, path).toBe(403);
      }
    } finally {
      opRest.close();
    }
  });

  it("the data plane also works with namespaced Roles alone, and reaches no other namespace", async () => {
    const authzKc = await namespacedKubeConfig(kc, "authz", [ns], `kw-authz-${ns}`);
    const authzRest = new KubeRest(authzKc, { qps: 0 });
    const config = defaultConfig({ namespaces: [ns], grpcAddress: "127.0.0.1:0", httpAuthAddress: "", metricsAddress: "", usageStatus: false, usageAlerts: false });
    const authz = await startAuthz({ config, kc: authzKc, rest: authzRest, log: createLogger({ level: "error", sink: () => undefined }), registry: new Registry() });
    try {
      await eventually(() => (authz.ready() ? true : undefined), 20_000, "the data plane's watches in the namespace");
      for (const path of [`/apis/keyward.dev/v1alpha1/namespaces/${other}/apikeys`, "/apis/keyward.dev/v1alpha1/apikeys", secretsPath(ns)]) {
        const err = await authzRest.request("GET", path).catch((e: unknown) => e);
        expect(err instanceof KubeApiError ? err.status : err, path).toBe(403);
      }
    } finally {
      await authz.stop();
      authzRest.close();
    }
  });

  it("measures a re-read cycle of referenced Secrets against listing them", async () => {
    const count = 500;
    const value = b64("k".repeat(1024));
    const names = Array.from({ length: count }, (_, i) => `ref-${i}`);
    for (let i = 0; i < count; i += 50) {
      await Promise.all(names.slice(i, i + 50).map((name) => rest.request("POST", secretsPath(other), { body: { metadata: { name }, data: { "api-key": value } } })));
    }
    let requests = 0;
    const measureRest = new KubeRest(kc, { qps: 0, onRequest: () => requests++ });
    const reads = { metadata: 0, full: 0, error: 0 };
    const refs = new ReferencedSecrets({
      rest: measureRest,
      log: createLogger({ level: "error", sink: () => undefined }),
      intervalMs: 0,
      onChange: () => undefined,
      onRead: (r) => reads[r]++,
    });
    names.forEach((name, i) => { refs.track(`${other}/k-${i}`, `${other}/${name}`); });
    const timed = async (fn: () => Promise<unknown>): Promise<number> => {
      const t0 = performance.now();
      await fn();
      return Math.round(performance.now() - t0);
    };
    const firstMs = await timed(() => refs.refresh());
    const cycles = 3;
    const before = requests;
    const cycleMs = Math.round((await timed(async () => { for (let c = 0; c < cycles; c++) await refs.refresh(); })) / cycles);
    const perCycleRequests = (requests - before) / cycles;
    const listMs = await timed(() => measureRest.request("GET", secretsPath(other)));
    measureRest.close();
    const figures = { secrets: count, firstReadMs: firstMs, metadataCycleMs: cycleMs, perSecretMs: Math.round((cycleMs / count) * 100) / 100, requestsPerCycle: perCycleRequests, listAllMs: listMs };
    console.log(`[referenced-secrets] ${JSON.stringify(figures)}`);
    expect(reads.full).toBe(count);
    expect(reads.error).toBe(0);
    expect(perCycleRequests).toBe(count);
    expect(refs.size).toBe(count);
  }, 120_000);
});
