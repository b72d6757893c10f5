// The operator's view of Secrets. The Secret informer keeps no plaintext: each
// cached Secret is reduced to its metadata and the sha256 of every data field,
// which is all the operator needs to notice a deleted, replaced or tampered key.
import { createHash } from "node:crypto";
import type { KubernetesObject, V1OwnerReference } from "@kubernetes/client-node";
import { API_VERSION, LABEL_APIKEY, LABEL_MANAGED_BY, SECRET_DATA_KEY, type ApiKey } from "../api/types.ts";

/**
 * The label selector of the operator's Secret watch: only Secrets keyward created
 * (buildKeySecret puts both labels on them).
 */
export const MANAGED_SECRETS_SELECTOR = `${LABEL_MANAGED_BY}=keyward,${LABEL_APIKEY}`;

export interface SecretView extends KubernetesObject {
  metadata: NonNullable<KubernetesObject["metadata"]>;
  /** sha256:<hex> of each data field's decoded bytes. */
  hashes: Record<string, string>;
}

interface RawSecret extends KubernetesObject {
  data?: Record<string, string>;
}

/** Hash of the decoded bytes of a base64 Secret field, as `sha256:<hex>`. */
export function hashSecretField(base64: string): string {
  return `sha256:${createHash("sha256").update(Buffer.from(base64, "base64")).digest("hex")}`;
}

/** Informer transform: keeps metadata and field hashes, drops the data. */
export function toSecretView(obj: KubernetesObject): SecretView {
  const raw = obj as RawSecret;
  const hashes: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw.data ?? {})) hashes[k] = hashSecretField(v);
  const md = raw.metadata ?? {};
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: md.name,
      namespace: md.namespace,
      uid: md.uid,
      resourceVersion: md.resourceVersion,
      labels: md.labels,
      ownerReferences: md.ownerReferences,
    },
    hashes,
  };
}

/** The controller owner of a Secret, if any. */
export function controllerOf(secret: KubernetesObject): V1OwnerReference | undefined {
  return secret.metadata?.ownerReferences?.find((o) => o.controller === true);
}

export function isOwnedBy(secret: KubernetesObject, apiKey: ApiKey): boolean {
  const owner = controllerOf(secret);
  return owner?.kind === "ApiKey" && owner.uid === apiKey.metadata.uid;
}

export const secretPath = (namespace: string, name: string): string =>
  `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`;

/** The labels of a Secret keyward issues into; the operator's watch selects on them. */
export const managedLabels = (apiKey: ApiKey): Record<string, string> => ({
  [LABEL_MANAGED_BY]: "keyward",
  [LABEL_APIKEY]: apiKey.metadata.name,
});

export function hasManagedLabels(secret: KubernetesObject, apiKey: ApiKey): boolean {
  const labels = secret.metadata?.labels ?? {};
  return Object.entries(managedLabels(apiKey)).every(([k, v]) => labels[k] === v);
}

export const secretNameOf = (apiKey: ApiKey): string => apiKey.spec.secretName ?? `${apiKey.metadata.name}-apikey`;

/** The Secret that delivers an issued key: owned by the ApiKey, labelled, the key under `api-key`. */
export function buildKeySecret(apiKey: ApiKey, key: string, keyId: string): KubernetesObject & { data: Record<string, string> } {
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "Opaque",
    metadata: {
      name: secretNameOf(apiKey),
      namespace: apiKey.metadata.namespace,
      labels: managedLabels(apiKey),
      annotations: { "keyward.dev/key-id": keyId },
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: "ApiKey",
          name: apiKey.metadata.name,
          uid: apiKey.metadata.uid ?? "",
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    data: { [SECRET_DATA_KEY]: Buffer.from(key, "utf8").toString("base64") },
  } as KubernetesObject & { data: Record<string, string> };
}
