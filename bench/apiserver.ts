// The benches that need a real control plane (etcd + kube-apiserver, built by
// scripts/controlplane-build.sh): seeding ApiKeys for the watch-fed check run,
// revocation lag, and operator throughput.
import type { KubeConfig } from "@kubernetes/client-node";
import type { Registry } from "prom-client";
import type { ApiKey } from "../src/api/types.ts";
import { installCrds } from "../src/k8s/apply.ts";
import { loadKubeConfig } from "../src/k8s/client.ts";
import { KubeApiError, KubeRest } from "../src/k8s/rest.ts";
import { ControlPlane } from "../test/controlplane/controlplane.ts";
import { authzClient, checkRequest, createKey, createPolicy, deleteKey, patchKeySpec, startAuthzEnv } from "../test/conformance/harness.ts";
import { createApiKey, startTestOperator } from "../test/support/operator.ts";
import type { ApiKeyPolicy } from "../src/api/types.ts";
import { apiKeyObject, benchPolicy, BENCH_HOST } from "./lib/fixture.ts";

const BASE = "/apis/keyward.dev/v1alpha1";

export async function startControlPlane(log: (s: string) => void): Promise<ControlPlane> {
  return ControlPlane.start({
    controllerManager: false,
    log: (l) => {
      log(`controlplane: ${l}`);
    },
    beforeControllerManager: async (kubeconfig) => {
      const rest = new KubeRest(loadKubeConfig(kubeconfig));
      await installCrds(rest);
      rest.close();
    },
  });
}

export async function createNamespace(rest: KubeRest, name: string): Promise<void> {
  await rest.request("POST", "/api/v1/namespaces", { body: { apiVersion: "v1", kind: "Namespace", metadata: { name } } }).catch((err: unknown) => {
    if (!(err instanceof KubeApiError && err.status === 409)) throw err;
  });
}

/** Runs `fn` over `items`, `concurrency` at a time. */
export async function pool<T>(items: T[], concurrency: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** Writes bench keys 0..n-1 and the bench policy (or `policy`) into `namespace`, status included (as the operator would). */
export async function seedBenchKeys(kubeconfig: string, namespace: string, n: number, log: (s: string) => void, policy: ApiKeyPolicy = benchPolicy(namespace)): Promise<{ seconds: number }> {
  const rest = new KubeRest(loadKubeConfig(kubeconfig), { qps: 0 });
  try {
    await createNamespace(rest, namespace);
    const p = policy;
    await rest.request("POST", `${BASE}/namespaces/${namespace}/apikeypolicies`, { body: p });
    const t0 = performance.now();
    let done = 0;
    await pool(
      Array.from({ length: n }, (_, i) => i),
      32,
      async (i) => {
        const obj = apiKeyObject(i, namespace);
        const { status, ...rest0 } = obj;
        const meta = { name: obj.metadata.name, namespace, labels: obj.metadata.labels };
        await rest.request("POST", `${BASE}/namespaces/${namespace}/apikeys`, { body: { ...rest0, metadata: meta } });
        await rest.request("PATCH", `${BASE}/namespaces/${namespace}/apikeys/${obj.metadata.name}/status`, {
          body: { status: { state: status?.state, keys: status?.keys } },
          contentType: "application/merge-patch+json",
        });
        if (++done % 2000 === 0) log(`seeded ${done}/${n} ApiKeys`);
      },
    );
    return { seconds: Math.round((performance.now() - t0) / 100) / 10 };
  } finally {
    rest.close();
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export interface RevocationResult {
  changes: number;
  byMode: Record<string, number>;
  indexKeysDuringRun: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  over1s: number;
}

/**
 * `changes` revocations through the apiserver, cycling disable / delete / expire:
 * the clock starts just before the write and stops at the first denied Check
 * (polled back to back over gRPC). The data plane runs with its shipped RBAC and
 * watches every namespace, so the index also holds whatever else is in the cluster.
 */
export async function revocationLag(kubeconfig: string, changes: number, log: (s: string) => void): Promise<RevocationResult> {
  const env = await startAuthzEnv(kubeconfig);
  const ns = "bench-revoke";
  const client = authzClient(env.authz.grpcPort);
  try {
    await createNamespace(env.admin, ns);
    await createPolicy(env.admin, ns, "revoke", { hosts: [BENCH_HOST], rules: [{ paths: ["/v1/orders/**"], scopes: ["orders:read"] }] });
    const check = async (key: string): Promise<number> => {
      const r = await client.check(checkRequest({ host: BENCH_HOST, path: "/v1/orders/1", headers: { "x-api-key": key } }));
      return r.denied_response?.status.code ?? 200;
    };
    const modes = ["disable", "delete", "expire"] as const;
    const lat: number[] = [];
    const byMode: Record<string, number> = {};
    for (let i = 0; i < changes; i++) {
      const mode = modes[i % 3]!;
      byMode[mode] = (byMode[mode] ?? 0) + 1;
      const name = `rev-${i}`;
      const k = await createKey(env.admin, ns, name, { scopes: ["orders:read"] });
      const ready = Date.now() + 10_000;
      while ((await check(k.key)) !== 200) {
        if (Date.now() > ready) throw new Error(`key ${name} never accepted`);
        await new Promise((r) => setTimeout(r, 2));
      }
      const t0 = performance.now();
      if (mode === "disable") await patchKeySpec(env.admin, ns, name, { disabled: true });
      else if (mode === "delete") await deleteKey(env.admin, ns, name);
      else await patchKeySpec(env.admin, ns, name, { expiresAt: new Date(Date.now() - 1000).toISOString() });
      let ms = Infinity;
      while (performance.now() - t0 < 5000) {
        // Refused: 401, or 429 once the unknown-key defence throttles this client's deleted keys.
        if ((await check(k.key)) !== 200) {
          ms = performance.now() - t0;
          break;
        }
        await new Promise((r) => setImmediate(r));
      }
      lat.push(ms);
      if (mode !== "delete") await deleteKey(env.admin, ns, name);
      if ((i + 1) % 50 === 0) log(`revocations: ${i + 1}/${changes}`);
    }
    const keysText = await env.registry.metrics();
    const indexKeys = Number(/keyward_authz_index_keys (\d+)/.exec(keysText)?.[1] ?? NaN);
    lat.sort((a, b) => a - b);
    const r1 = (x: number): number => Math.round(x * 10) / 10;
    return {
      changes,
      byMode,
      indexKeysDuringRun: indexKeys,
      p50Ms: r1(percentile(lat, 50)),
      p99Ms: r1(percentile(lat, 99)),
      maxMs: r1(lat[lat.length - 1] ?? NaN),
      over1s: lat.filter((x) => x >= 1000).length,
    };
  } finally {
    client.close();
    await env.stop();
  }
}

export interface OperatorResult {
  keys: number;
  settings: { kubeQps: number; kubeBurst: number; workers: number };
  applySeconds: number;
  allReadySeconds: number;
  operatorRequests: number;
  requestsPerKey: number;
  byVerb: Record<string, number>;
}

async function requestsByVerb(registry: Registry): Promise<Record<string, number>> {
  const m = await registry.getSingleMetric("keyward_operator_kube_requests_total")?.get();
  const out: Record<string, number> = {};
  for (const v of m?.values ?? []) out[String(v.labels.verb)] = (out[String(v.labels.verb)] ?? 0) + v.value;
  return out;
}

/** `count` ApiKeys applied at once (50 in flight) to a running operator; time until all are Ready. */
export async function operatorThroughput(kubeconfig: string, count: number, log: (s: string) => void): Promise<OperatorResult> {
  const kc: KubeConfig = loadKubeConfig(kubeconfig);
  const rest = new KubeRest(kc, { qps: 0 });
  const ns = `bench-op-${count}`;
  const settings = { kubeQps: 200, kubeBurst: 400, workers: 8 };
  await createNamespace(rest, ns);
  const op = await startTestOperator(kc, { namespaces: [ns], ...settings });
  try {
    const before = await requestsByVerb(op.registry);
    const t0 = Date.now();
    const names = Array.from({ length: count }, (_, i) => `k-${i}`);
    await pool(names, 50, async (n) => {
      await createApiKey(rest, ns, n, { owner: "load", scopes: ["orders:read"] });
    });
    const applied = Date.now();
    log(`operator ${count}: applied in ${(applied - t0) / 1000} s`);
    const deadline = Date.now() + 1_200_000;
    for (;;) {
      const list = await rest.request<{ items: ApiKey[] }>("GET", `${BASE}/namespaces/${ns}/apikeys`);
      const ready = list.items.filter((a) => a.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")).length;
      if (ready === count) break;
      if (Date.now() > deadline) throw new Error(`${ready}/${count} Ready after 20 min`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const done = Date.now();
    const after = await requestsByVerb(op.registry);
    const byVerb: Record<string, number> = {};
    for (const [v, n] of Object.entries(after)) byVerb[v] = n - (before[v] ?? 0);
    const total = Object.values(byVerb).reduce((a, b) => a + b, 0);
    return {
      keys: count,
      settings,
      applySeconds: (applied - t0) / 1000,
      allReadySeconds: (done - t0) / 1000,
      operatorRequests: total,
      requestsPerKey: Math.round((total / count) * 100) / 100,
      byVerb,
    };
  } finally {
    await op.stop();
    rest.close();
  }
}
