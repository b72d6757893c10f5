// `make demo`: a local control plane with keyward's CRDs and the samples applied,
// then what `kubectl get apikeys` would show. The control plane keeps running
// afterwards (`make cluster-down` stops it).
import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";
import { readdirSync } from "node:fs";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { FIELD_MANAGER, applyManifestFiles, installCrds } from "../src/k8s/apply.ts";
import { loadKubeConfig } from "../src/k8s/client.ts";
import { KubeRest } from "../src/k8s/rest.ts";
import { formatTable } from "../src/cli/table.ts";

const root = resolve(import.meta.dirname, "..");
const namespace = process.env.KEYWARD_DEMO_NAMESPACE ?? "keyward-demo";
const step = (s: string): void => {
  console.log(`\n==> ${s}`);
};

step("starting the local control plane (etcd, kube-apiserver, kube-controller-manager)");
const kubeconfig = execFileSync(process.execPath, [join(root, "test", "controlplane", "cli.ts"), "up"], {
  stdio: ["ignore", "pipe", "inherit"],
})
  .toString()
  .trim();
const kc = loadKubeConfig(kubeconfig);
const rest = new KubeRest(kc);

step("installing the CRDs ApiKey and ApiKeyPolicy (keyward.dev/v1alpha1)");
await installCrds(rest);

step(`applying config/samples/ in namespace ${namespace}`);
await rest.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } }, FIELD_MANAGER);
const samples = readdirSync(join(root, "config", "samples"))
  .filter((f) => f.endsWith(".yaml"))
  .map((f) => join(root, "config", "samples", f));
for (const obj of await applyManifestFiles(rest, samples, { namespace })) {
  console.log(`  ${obj.kind ?? ""}/${obj.metadata?.name ?? ""} applied`);
}

step(`kubectl get apikeys -n ${namespace}`);
const api = kc.makeApiClient(CustomObjectsApi);
interface Listed {
  items: { metadata: { name: string }; spec: { owner: string; scopes?: string[]; expiresAt?: string }; status?: { state?: string } }[];
}
const list = (await api.listNamespacedCustomObject({
  group: "keyward.dev",
  version: "v1alpha1",
  namespace,
  plural: "apikeys",
})) as Listed;
const rows = list.items.map((k) => [
  k.metadata.name,
  k.spec.owner,
  (k.spec.scopes ?? []).join(","),
  k.status?.state ?? "-",
  k.spec.expiresAt ?? "-",
]);
console.log(formatTable(["NAME", "OWNER", "SCOPES", "STATE", "EXPIRES"], rows, "  "));

console.log(`
The control plane keeps running. Try:
  export KUBECONFIG=${kubeconfig}
  kubectl get apikeys,apikeypolicies -n ${namespace}     (any kubectl)
Stop it with: make cluster-down`);
rest.close();
