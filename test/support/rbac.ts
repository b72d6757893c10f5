// Runs a keyward role with exactly the RBAC it ships: applies the manifests and
// returns a kubeconfig holding a fresh TokenRequest token of its ServiceAccount.
import { join, resolve } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { readFileSync } from "node:fs";
import { applyManifestFiles, applyObjects, parseManifests } from "../../src/k8s/apply.ts";
import { KubeRest, isConflict } from "../../src/k8s/rest.ts";

const repoRoot = resolve(import.meta.dirname, "..", "..");

export async function serviceAccountKubeConfig(
  adminKc: KubeConfig,
  rbacFiles: string[],
  serviceAccount: { namespace: string; name: string },
): Promise<KubeConfig> {
  const admin = new KubeRest(adminKc, { qps: 0 });
  try {
    await ensureNamespace(admin, serviceAccount.namespace);
    await applyManifestFiles(admin, rbacFiles.map((f) => join(repoRoot, f)));
    return await tokenKubeConfig(adminKc, admin, serviceAccount);
  } finally {
    admin.close();
  }
}

async function ensureNamespace(admin: KubeRest, name: string): Promise<void> {
  await admin.request("POST", "/api/v1/namespaces", { body: { apiVersion: "v1", kind: "Namespace", metadata: { name } } }).catch((err: unknown) => {
    if (!isConflict(err)) throw err;
  });
}

/**
 * A kubeconfig holding a fresh TokenRequest token of a ServiceAccount, valid for
 * `expirationSeconds` (default an hour); its context defaults to `namespace` when given.
 */
export async function tokenKubeConfig(
  adminKc: KubeConfig,
  admin: KubeRest,
  serviceAccount: { namespace: string; name: string },
  options: { expirationSeconds?: number; namespace?: string } = {},
): Promise<KubeConfig> {
  const tr = await admin.request<{ status: { token: string } }>(
    "POST",
    `/api/v1/namespaces/${serviceAccount.namespace}/serviceaccounts/${serviceAccount.name}/token`,
    { body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: options.expirationSeconds ?? 3600 } } },
  );
  const cluster = adminKc.getCurrentCluster();
  if (!cluster) throw new Error("the admin kubeconfig has no cluster");
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: cluster.server, caData: cluster.caData, caFile: cluster.caFile, skipTLSVerify: cluster.skipTLSVerify }],
    users: [{ name: serviceAccount.name, token: tr.status.token }],
    contexts: [{ name: serviceAccount.name, cluster: "c", user: serviceAccount.name, ...(options.namespace ? { namespace: options.namespace } : {}) }],
    currentContext: serviceAccount.name,
  });
  return kc;
}

/**
 * A role's namespaced install (config/rbac/namespaced/<component>-*.yaml applied in each of
 * `namespaces`), bound to a ServiceAccount of its own name, so that no ClusterRoleBinding
 * another suite made for keyward-<component> can lend it permissions.
 */
export async function namespacedKubeConfig(adminKc: KubeConfig, component: "operator" | "authz", namespaces: string[], name: string): Promise<KubeConfig> {
  const admin = new KubeRest(adminKc, { qps: 0 });
  const rename = <T,>(objects: T[]): T[] => JSON.parse(JSON.stringify(objects).replaceAll(`"keyward-${component}"`, JSON.stringify(name))) as T[];
  try {
    await ensureNamespace(admin, "keyward-system");
    const account = parseManifests(readFileSync(join(repoRoot, "config/rbac", `${component}-account.yaml`), "utf8")).filter((o) => o.kind === "ServiceAccount");
    await applyObjects(admin, rename(account));
    const namespaced = ["role", "binding"].flatMap((f) =>
      parseManifests(readFileSync(join(repoRoot, "config/rbac/namespaced", `${component}-${f}.yaml`), "utf8")),
    );
    for (const ns of namespaces) await applyObjects(admin, rename(namespaced), { namespace: ns });
    return await tokenKubeConfig(adminKc, admin, { namespace: "keyward-system", name });
  } finally {
    admin.close();
  }
}

/** The operator's shipped RBAC (config/rbac/operator-*.yaml). */
export const operatorKubeConfig = (adminKc: KubeConfig): Promise<KubeConfig> =>
  serviceAccountKubeConfig(adminKc, ["config/rbac/operator-account.yaml", "config/rbac/operator-role.yaml", "config/rbac/operator-binding.yaml"], {
    namespace: "keyward-system",
    name: "keyward-operator",
  });

/**
 * The data plane's shipped RBAC with the usage API's ClusterRole (config/rbac/authz-*.yaml,
 * config/rbac/usage-api/), plus any `extraRbacFiles` (the aggregated API's front-proxy reader).
 */
export const usageApiDataPlaneKubeConfig = (adminKc: KubeConfig, extraRbacFiles: string[] = []): Promise<KubeConfig> =>
  serviceAccountKubeConfig(
    adminKc,
    ["config/rbac/authz-account.yaml", "config/rbac/authz-role.yaml", "config/rbac/authz-binding.yaml", "config/rbac/usage-api/authz-usage-api.yaml", ...extraRbacFiles],
    { namespace: "keyward-system", name: "keyward-authz" },
  );
