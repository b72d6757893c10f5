// 10,000 ApiKeys created at once, the operator unthrottled (--kube-qps 0): every
// one is issued exactly one key. Under this load the operator's Secret watch lags
// behind its own creates and requests time out, so this is where a reconcile that
// took the operator's own write in flight for a lost Secret would rotate a key.
// Prints the time and the apiserver requests per key (docs/operator.md records them).
import { createHash } from "node:crypto";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ApiKey } from "../../src/api/types.ts";
import { SECRET_DATA_KEY } from "../../src/api/types.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { apiKeyPath, createApiKey, startTestOperator, type EventBody, type SecretBody, type TestOperator } from "../support/operator.ts";

const COUNT = Number(process.env.KEYWARD_BURST_KEYS ?? 10_000);
const CREATORS = 64;
let kc: KubeConfig;
let rest: KubeRest;
let ns: string;
let op: TestOperator;

beforeAll(async () => {
  kc = loadKubeConfig(inject("kubeconfig"));
  rest = new KubeRest(kc, { qps: 0 });
  ns = await createTestNamespace(kc, "burst");
  op = await startTestOperator(kc, { namespaces: [ns], kubeQps: 0, workers: 16 });
});

afterAll(async () => {
  await op.stop();
  await deleteNamespace(kc, ns);
  rest.close();
});

async function metricSum(name: string): Promise<number> {
  const m = await op.registry.getSingleMetric(name)?.get();
  return (m?.values ?? []).reduce((n, v) => n + v.value, 0);
}

/** Every item of a list, read in pages so no single response holds 10,000 Secrets. */
async function listAll<T>(path: string, query: Record<string, string> = {}): Promise<T[]> {
  const out: T[] = [];
  let cont: string | undefined;
  do {
    const page = await rest.request<{ items: T[]; metadata: { continue?: string } }>("GET", path, { query: { ...query, limit: "2000", continue: cont } });
    out.push(...page.items);
    cont = page.metadata.continue || undefined;
  } while (cont);
  return out;
}

const sha256OfField = (b64: string): string => `sha256:${createHash("sha256").update(Buffer.from(b64, "base64")).digest("hex")}`;
const isReady = (a: ApiKey): boolean => a.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true;

describe("operator under a burst of creates", () => {
  it(`issues ${COUNT} ApiKeys created at once exactly one key each, with --kube-qps 0`, { timeout: 420_000 }, async () => {
    const baseline = await metricSum("keyward_operator_kube_requests_total");
    const started = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CREATORS }, async () => {
        while (next < COUNT) await createApiKey(rest, ns, `b-${next++}`, { owner: "burst", scopes: ["a:b"], rotation: { gracePeriod: "0s" } });
      }),
    );
    const applied = Date.now();
    await eventually(
      async () => ((await listAll<ApiKey>(apiKeyPath(ns))).filter(isReady).length === COUNT ? true : undefined),
      360_000,
      `${COUNT} ApiKeys Ready`,
    );
    const done = Date.now();
    const requests = (await metricSum("keyward_operator_kube_requests_total")) - baseline;

    const apiKeys = await listAll<ApiKey>(apiKeyPath(ns));
    const secrets = new Map((await listAll<SecretBody>(`/api/v1/namespaces/${ns}/secrets`, { labelSelector: "app.kubernetes.io/managed-by=keyward" })).map((s) => [s.metadata.name, s]));
    const events = await listAll<EventBody>(`/api/v1/namespaces/${ns}/events`);
    const byReason = new Map<string, number>();
    for (const e of events) byReason.set(e.reason, (byReason.get(e.reason) ?? 0) + 1);
    const figures = {
      keys: COUNT,
      createSeconds: (applied - started) / 1000,
      allReadySeconds: (done - started) / 1000,
      operatorRequests: requests,
      requestsPerKey: Math.round((requests / COUNT) * 100) / 100,
      reconcileErrors: (await op.registry.getSingleMetric("keyward_operator_reconciles_total")?.get())?.values.find((v) => v.labels.result === "error")?.value ?? 0,
      events: Object.fromEntries(byReason),
    };
    console.log(`[burst] ${JSON.stringify(figures)}`);

    // No key was replaced: no SecretMissing (or any other replacement), no Rotating, no grace key.
    for (const reason of ["SecretMissing", "SecretTampered", "RotationIncomplete", "Rotated"]) expect(byReason.get(reason) ?? 0, reason).toBe(0);
    expect(apiKeys).toHaveLength(COUNT);
    const wrong: string[] = [];
    for (const a of apiKeys) {
      const keys = a.status?.keys ?? [];
      const secret = secrets.get(`${a.metadata.name}-apikey`);
      const field = secret?.data?.[SECRET_DATA_KEY];
      const ok =
        a.status?.state === "Active" &&
        a.status.lastRotationAt === undefined &&
        keys.length === 1 &&
        keys[0]?.state === "active" &&
        field !== undefined &&
        sha256OfField(field) === keys[0].hash;
      if (!ok) wrong.push(`${a.metadata.name}: state ${a.status?.state ?? "-"}, keys ${keys.map((k) => k.state).join(",")}, secret ${secret ? "present" : "missing"}`);
    }
    expect(wrong.slice(0, 20)).toEqual([]);
    expect(secrets.size).toBe(COUNT);
  });
});
