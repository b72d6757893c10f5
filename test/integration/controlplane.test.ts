// The local control plane itself: the right versions, RBAC on, a working admin
// kubeconfig, and a stop that leaves no process behind.
import { afterAll, describe, expect, it } from "vitest";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeApiError, KubeRest } from "../../src/k8s/rest.ts";
import { ControlPlane, processesUsing } from "../controlplane/controlplane.ts";

let cp: ControlPlane | undefined;
afterAll(async () => {
  await cp?.stop({ removeDir: true });
});

describe("local control plane", () => {
  it("serves kube-apiserver v1.37.2 with RBAC, and stops without leaving a process", async () => {
    cp = await ControlPlane.start({ controllerManager: true });
    const dir = cp.dir;
    expect(await processesUsing(dir)).toHaveLength(3);
    const rest = new KubeRest(loadKubeConfig(cp.kubeconfig), { qps: 0 });
    const version = await rest.request<{ gitVersion: string }>("GET", "/version");
    expect(version.gitVersion).toBe("v1.37.2");
    // RBAC is on: a ServiceAccount without bindings may not list Secrets.
    await rest.request("POST", "/api/v1/namespaces/default/serviceaccounts", { body: { metadata: { name: "nobody" } } });
    const tr = await rest.request<{ status: { token: string } }>("POST", "/api/v1/namespaces/default/serviceaccounts/nobody/token", {
      body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 600 } },
    });
    const nobodyKc = loadKubeConfig(cp.kubeconfig);
    const user = nobodyKc.getCurrentUser();
    if (user) (user as { token?: string }).token = tr.status.token;
    const nobody = new KubeRest(nobodyKc, { qps: 0 });
    const denied = await nobody.request("GET", "/api/v1/secrets").catch((err: unknown) => err);
    expect(denied).toBeInstanceOf(KubeApiError);
    expect((denied as KubeApiError).status).toBe(403);
    nobody.close();
    const sa = await rest
      .request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
      .catch((err: unknown) => err);
    expect(sa).not.toBeInstanceOf(KubeApiError); // the controller manager runs
    rest.close();
    await cp.stop();
    expect(await processesUsing(dir)).toEqual([]);
  });
});
