// 1,000 ApiKeys applied at once all reach Ready. Prints the time and the number of
// apiserver requests the operator sent per key (docs/operator.md records them).
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ApiKey } from "../../src/api/types.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { createApiKey, startTestOperator, type TestOperator } from "../support/operator.ts";

const COUNT = Number(process.env.KEYWARD_SCALE_KEYS ?? 1000);
let kc: KubeConfig;
let rest: KubeRest;
let ns: string;
let op: TestOperator;

beforeAll(async () => {
  kc = loadKubeConfig(inject("kubeconfig"));
  rest = new KubeRest(kc, { qps: 0 });
  ns = await createTestNamespace(kc, "scale");
  op = await startTestOperator(kc, { namespaces: [ns], kubeQps: 200, kubeBurst: 400, workers: 8 });
});

afterAll(async () => {
  await op.stop();
  await deleteNamespace(kc, ns);
  rest.close();
});

async function requestsSent(): Promise<number> {
  const m = await op.registry.getSingleMetric("keyward_operator_kube_requests_total")?.get();
  return (m?.values ?? []).reduce((n, v) => n + v.value, 0);
}

describe(`operator at scale`, () => {
  it(`brings ${COUNT} ApiKeys applied at once to Ready`, async () => {
    const baseline = await requestsSent();
    const started = Date.now();
    const names = Array.from({ length: COUNT }, (_, i) => `k-${i}`);
    for (let i = 0; i < names.length; i += 50) {
      await Promise.all(names.slice(i, i + 50).map((n) => createApiKey(rest, ns, n, { owner: "load", scopes: ["a:b"] })));
    }
    const applied = Date.now();
    await eventually(
      async () => {
        const list = await rest.request<{ items: ApiKey[] }>("GET", `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeys`);
        const readyCount = list.items.filter((a) => a.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")).length;
        return readyCount === COUNT ? true : undefined;
      },
      240_000,
      `${COUNT} ApiKeys Ready`,
    );
    const done = Date.now();
    const requests = (await requestsSent()) - baseline;
    const secrets = await rest.request<{ items: unknown[] }>("GET", `/api/v1/namespaces/${ns}/secrets`, {
      query: { labelSelector: "app.kubernetes.io/managed-by=keyward" },
    });
    expect(secrets.items).toHaveLength(COUNT);
    const figures = {
      keys: COUNT,
      applySeconds: (applied - started) / 1000,
      allReadySeconds: (done - started) / 1000,
      operatorRequests: requests,
      requestsPerKey: Math.round((requests / COUNT) * 100) / 100,
    };
    console.log(`[scale] ${JSON.stringify(figures)}`);
    // A read of the Secret's name (the watch sees only keyward's Secrets, so a Secret someone
    // else made under it is found this way), status, Secret and one Event per key; watch
    // echoes of our own writes cost nothing.
    expect(figures.requestsPerKey).toBeLessThanOrEqual(4.1);
  });
});
