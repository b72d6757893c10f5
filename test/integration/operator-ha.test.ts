// Two operators with leader election: only the leader writes; when it dies
// without releasing its Lease, the other takes over within the lease duration.
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ApiKey } from "../../src/api/types.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { operatorKubeConfig } from "../support/rbac.ts";
import { createApiKey, getApiKey, ready, startTestOperator, type TestOperator } from "../support/operator.ts";

let kc: KubeConfig;
let rest: KubeRest;
let ns: string;
const ops: TestOperator[] = [];
const LEASE_MS = 3000;

beforeAll(async () => {
  kc = loadKubeConfig(inject("kubeconfig"));
  rest = new KubeRest(kc, { qps: 0 });
  ns = await createTestNamespace(kc, "ha");
  const opKc = await operatorKubeConfig(kc);
  const settings = {
    namespaces: [ns],
    leaderElect: true,
    leaseName: `keyward-ha-${ns}`,
    leaseNamespace: "keyward-system",
    leaseDuration: LEASE_MS,
    leaseRenewDeadline: 2000,
    leaseRetryPeriod: 500,
  };
  for (const identity of ["replica-a", "replica-b"]) ops.push(await startTestOperator(opKc, { ...settings, identity }));
});

afterAll(async () => {
  for (const op of ops) await op.stop().catch(() => undefined);
  await deleteNamespace(kc, ns);
  rest.close();
});

async function writes(op: TestOperator): Promise<number> {
  const m = await op.registry.getSingleMetric("keyward_operator_kube_requests_total")?.get();
  return (m?.values ?? []).filter((v) => v.labels.verb !== "GET").reduce((n, v) => n + v.value, 0);
}

const readyKey = (name: string, ms: number): Promise<ApiKey> =>
  eventually(async () => {
    const ak = await getApiKey(rest, ns, name);
    return ready(ak) === "True" ? ak : undefined;
  }, ms, `${name} Ready`);

describe("operator high availability", () => {
  it("has one leader that does all the writing, and a standby that takes over when it dies", async () => {
    const leader = await eventually(() => ops.find((o) => o.handle.isLeader()), 10_000, "a leader");
    const standby = ops.find((o) => o !== leader)!;
    expect(standby.handle.isLeader()).toBe(false);
    const standbyWritesBefore = await writes(standby);

    await createApiKey(rest, ns, "first", { owner: "acme" });
    await readyKey("first", 20_000);
    // Lease renewals are the standby's only writes: it created no Secret, status or Event.
    const standbyMetrics = await standby.registry.getSingleMetricAsString("keyward_operator_reconciles_total");
    expect(standbyMetrics).not.toMatch(/result="updated"\} [1-9]/);
    expect(await writes(standby)).toBe(standbyWritesBefore);

    // The leader crashes: it stops without releasing its Lease.
    const crashedAt = Date.now();
    await leader.stop({ releaseLease: false });
    await eventually(() => (standby.handle.isLeader() ? true : undefined), LEASE_MS + 3000, "the standby to lead");
    const takeoverMs = Date.now() - crashedAt;
    console.log(`[ha] takeover after ${takeoverMs} ms (lease ${LEASE_MS} ms)`);
    expect(takeoverMs).toBeLessThanOrEqual(LEASE_MS + 1000);

    await createApiKey(rest, ns, "second", { owner: "acme" });
    await readyKey("second", 20_000);
  });
});
