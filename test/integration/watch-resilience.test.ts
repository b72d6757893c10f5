// The informer survives the apiserver going away: kill kube-apiserver mid-stream,
// change objects while it is down or before the watch reconnects, compact etcd so
// the old resourceVersion is gone, restart it — the cache ends up exactly equal to
// the server, and every lifecycle step was counted.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApiKey } from "../../src/api/types.ts";
import { installCrds } from "../../src/k8s/apply.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { Informer, kubeListWatch, type LifecycleEvent } from "../../src/k8s/informer.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { ControlPlane } from "../controlplane/controlplane.ts";
import { eventually } from "../support/k8s.ts";
import { createApiKey } from "../support/operator.ts";

let cp: ControlPlane;
let rest: KubeRest;
const ns = "default";

beforeAll(async () => {
  cp = await ControlPlane.start({ controllerManager: false });
  rest = new KubeRest(loadKubeConfig(cp.kubeconfig), { qps: 0, timeoutMs: 5000 });
  await installCrds(rest);
});

afterAll(async () => {
  rest.close();
  await cp.stop({ removeDir: true });
});

async function etcdRevision(): Promise<number> {
  const res = await fetch(`${cp.etcdUrl}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: Buffer.from("/").toString("base64") }) });
  const body = (await res.json()) as { header: { revision: string } };
  return Number(body.header.revision);
}

async function serverState(): Promise<Map<string, string>> {
  const list = await rest.request<{ items: ApiKey[] }>("GET", `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeys`);
  return new Map(list.items.map((i) => [i.metadata.name, i.metadata.resourceVersion ?? ""]));
}

describe("informer against a restarting apiserver", () => {
  it("misses nothing across an apiserver restart and an etcd compaction", async () => {
    for (let i = 0; i < 10; i++) await createApiKey(rest, ns, `before-${i}`, { owner: "o" });
    const lifecycle: LifecycleEvent[] = [];
    const kc = loadKubeConfig(cp.kubeconfig);
    const informerRest = new KubeRest(kc, { qps: 0, timeoutMs: 5000 });
    const inf = new Informer<ApiKey>({
      name: "apikeys",
      ...kubeListWatch<ApiKey>(kc, informerRest, `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeys`),
      onChange: () => undefined,
      onLifecycle: (e) => lifecycle.push(e),
      // A long first backoff leaves room to change objects before the informer comes back.
      backoffInitialMs: 4000,
      backoffMaxMs: 8000,
    });
    await inf.start();
    expect(inf.list()).toHaveLength(10);
    await eventually(() => (lifecycle.includes("connect") ? true : undefined), 5000, "watch connected");

    // Mid-stream: the apiserver dies.
    await cp.stopApiserver();
    await eventually(() => (lifecycle.includes("error") ? true : undefined), 15_000, "the informer to notice");
    await cp.startApiserver();

    // While the informer backs off: create, update and delete, then compact etcd so
    // the informer's resourceVersion no longer exists.
    for (let i = 0; i < 5; i++) await createApiKey(rest, ns, `during-${i}`, { owner: "o" });
    for (let i = 0; i < 3; i++) {
      await rest.request("DELETE", `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeys/before-${i}`);
    }
    await rest.request("PATCH", `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeys/before-9`, {
      body: { spec: { disabled: true } },
      contentType: "application/merge-patch+json",
    });
    const rev = await etcdRevision();
    const compact = await fetch(`${cp.etcdUrl}/v3/kv/compaction`, { method: "POST", body: JSON.stringify({ revision: String(rev), physical: true }) });
    expect(compact.ok).toBe(true);

    // And it keeps working afterwards.
    const expected = await eventually(
      async () => {
        const server = await serverState();
        const cache = new Map(inf.list().map((i) => [i.metadata.name, i.metadata.resourceVersion ?? ""]));
        return JSON.stringify([...server].sort()) === JSON.stringify([...cache].sort()) ? server : undefined;
      },
      60_000,
      "the cache to equal the server",
    );
    expect(expected.size).toBe(12);
    expect(inf.get(ns, "before-9")?.spec.disabled).toBe(true);
    expect(inf.get(ns, "before-0")).toBeUndefined();
    await createApiKey(rest, ns, "after", { owner: "o" });
    await eventually(() => inf.get(ns, "after"), 10_000, "a new object after recovery");
    expect(lifecycle).toEqual(expect.arrayContaining(["list", "connect", "error", "relist"]));
    await inf.stop();
    informerRest.close();
  });
});
