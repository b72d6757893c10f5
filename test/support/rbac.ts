// Runs a keyward role with exactly the RBAC it ships: applies the manifests and
// returns a kubeconfig holding a fresh TokenRequest token of its ServiceAccount.
import { join, resolve } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { applyManifestFiles } from "../../src/k8s/apply.ts";
import { KubeRest, isConflict } from "../../src/k8s/rest.ts";

const repoRoot = resolve(import.meta.dirname, "..", "..");

export async function serviceAccountKubeConfig(
  adminKc: KubeConfig,
  rbacFiles: string[],
  serviceAccount: { namespace: string; name: string },
): Promise<KubeConfig> {
  const admin = new KubeRest(adminKc, { qps: 0 });
  try {
    await admin
      .request("POST", "/api/v1/namespaces", { body: { apiVersion: "v1", kind: "Namespace", metadata: { name: serviceAccount.namespace } } })
      .catch((err: unknown) => {
        if (!isConflict(err)) throw err;
      });
    await applyManifestFiles(admin, rbacFiles.map((f) => join(repoRoot, f)));
    const tr = await admin.request<{ status: { token: string } }>(
      "POST",
      `/api/v1/namespaces/${serviceAccount.namespace}/serviceaccounts/${serviceAccount.name}/token`,
      { body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } } },
    );
    const cluster = adminKc.getCurrentCluster();
    if (!cluster) throw new Error("the admin kubeconfig has no cluster");
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "c", server: cluster.server, caData: cluster.caData, caFile: cluster.caFile, skipTLSVerify: cluster.skipTLSVerify }],
      users: [{ name: serviceAccount.name, token: tr.status.token }],
      contexts: [{ name: serviceAccount.name, cluster: "c", user: serviceAccount.name }],
      currentContext: serviceAccount.name,
    });
    return kc;
  } finally {
    admin.close();
  }
}

/** The operator's shipped RBAC (config/rbac/operator-*.yaml). */
export const operatorKubeConfig = (adminKc: KubeConfig): Promise<KubeConfig> =>
  serviceAccountKubeConfig(adminKc, ["config/rbac/operator-role.yaml", "config/rbac/operator-binding.yaml"], {
    namespace: "keyward-system",
    name: "keyward-operator",
  });
