// Server-side apply of YAML manifests (what `kubectl apply --server-side` does),
// used to install the CRDs and the samples without kubectl.
import { readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { KubernetesObject } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { KeywardError } from "../errors.ts";
import type { KubeRest } from "./rest.ts";

export const FIELD_MANAGER = "keyward";

const repoRoot = resolve(import.meta.dirname, "..", "..");

/** The CRD manifests shipped in crds/. */
export function crdFiles(): string[] {
  const dir = join(repoRoot, "crds");
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => join(dir, f));
}

/** Parses every YAML document in `text`; empty documents are skipped. */
export function parseManifests(text: string, source = "<input>"): KubernetesObject[] {
  const out: KubernetesObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) {
      throw new KeywardError("ManifestInvalid", `${source}: ${doc.errors.map((e) => e.message).join("; ")}`);
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    if (typeof value !== "object" || !("apiVersion" in value) || !("kind" in value)) {
      throw new KeywardError("ManifestInvalid", `${source}: a document has no apiVersion or kind`);
    }
    out.push(value as KubernetesObject);
  }
  return out;
}

/** Applies objects with server-side apply; `namespace` fills in a missing metadata.namespace of namespaced kinds. */
export async function applyObjects(
  rest: KubeRest,
  objects: KubernetesObject[],
  opts: { namespace?: string; fieldManager?: string } = {},
): Promise<KubernetesObject[]> {
  const applied: KubernetesObject[] = [];
  for (const obj of objects) {
    const clusterScoped = obj.kind === "CustomResourceDefinition" || obj.kind === "Namespace";
    const withNs: KubernetesObject =
      opts.namespace && !obj.metadata?.namespace && !clusterScoped
        ? { ...obj, metadata: { ...obj.metadata, namespace: opts.namespace } }
        : obj;
    try {
      applied.push(await rest.apply(withNs, opts.fieldManager ?? FIELD_MANAGER, { force: true }));
    } catch (err) {
      const what = `${obj.kind ?? "?"}/${obj.metadata?.name ?? "?"}`;
      throw new KeywardError("KubernetesRequestFailed", `apply ${what}: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
    if (obj.kind === "CustomResourceDefinition") rest.resetDiscovery();
  }
  return applied;
}

export async function applyManifestFiles(
  rest: KubeRest,
  files: string[],
  opts: { namespace?: string } = {},
): Promise<KubernetesObject[]> {
  const objects = files.flatMap((f) => parseManifests(readFileSync(f, "utf8"), f));
  return applyObjects(rest, objects, opts);
}

interface Crd {
  status?: { conditions?: { type: string; status: string }[] };
}

/** Waits until every named CRD reports Established=True, polling with a deadline. */
export async function waitForCrds(rest: KubeRest, names: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const name of names) {
    for (;;) {
      const crd = await rest.request<Crd>("GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
      if (crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) break;
      if (Date.now() > deadline) throw new KeywardError("Timeout", `CRD ${name} not Established after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  rest.resetDiscovery();
}

/** Installs keyward's CRDs and waits until the apiserver serves them. */
export async function installCrds(rest: KubeRest, timeoutMs = 30_000): Promise<void> {
  await applyManifestFiles(rest, crdFiles());
  await waitForCrds(rest, ["apikeys.keyward.dev", "apikeypolicies.keyward.dev"], timeoutMs);
}
