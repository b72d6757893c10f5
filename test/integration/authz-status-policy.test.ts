// The data plane's write access to ApiKey status, against the real apiserver:
// RBAC grants it patch on apikeys/status; the shipped ValidatingAdmissionPolicy
// (config/admission/) narrows that to status.usage. The data plane's identity is
// refused any change to status.keys, state, conditions or the other fields the
// operator owns, and still writes usage the way src/usage/flusher.ts does.
import { join, resolve } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ApiKey } from "../../src/api/types.ts";
import { applyManifestFiles } from "../../src/k8s/apply.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeApiError, KubeRest } from "../../src/k8s/rest.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { apiKeyPath, createApiKey, getApiKey } from "../support/operator.ts";
import { serviceAccountKubeConfig } from "../support/rbac.ts";

const root = resolve(import.meta.dirname, "..", "..");
const POLICY = "keyward-authz-status-usage-only";
const HASH_A = `sha256:${"a".repeat(64)}`;
const HASH_EVIL = `sha256:${"e".repeat(64)}`;

let admin: KubeRest;
let dataPlane: KubeRest;
let ns: string;
let adminKc: KubeConfig;

/** What the operator writes: an active key, Active state, a Ready condition. */
const operatorStatus = {
  observedGeneration: 1,
  state: "Active",
  currentKeyId: "key_aaaaaaaa",
  secretName: "k-apikey",
  keys: [{ id: "key_aaaaaaaa", hash: HASH_A, state: "active", createdAt: "2026-01-01T00:00:00Z" }],
  conditions: [{ type: "Ready", status: "True", reason: "KeyActive", message: "ok", lastTransitionTime: "2026-01-01T00:00:00Z", observedGeneration: 1 }],
};

async function keyWithStatus(name: string): Promise<ApiKey> {
  await createApiKey(admin, ns, name, { owner: "acme", keyHash: HASH_A });
  return admin.request<ApiKey>("PATCH", `${apiKeyPath(ns, name)}/status`, {
    body: { status: operatorStatus },
    contentType: "application/merge-patch+json",
  });
}

/** A merge patch of status as the data plane, with the resourceVersion precondition the flusher sends. */
async function patchAsDataPlane(name: string, status: Record<string, unknown>): Promise<ApiKey> {
  const ak = await getApiKey(admin, ns, name);
  return dataPlane.request<ApiKey>("PATCH", `${apiKeyPath(ns, name)}/status`, {
    body: { metadata: { resourceVersion: ak?.metadata.resourceVersion }, status },
    contentType: "application/merge-patch+json",
  });
}

const refusal = (p: Promise<unknown>): Promise<KubeApiError | undefined> =>
  p.then(
    () => undefined,
    (err: unknown) => {
      if (err instanceof KubeApiError) return err;
      throw err;
    },
  );

beforeAll(async () => {
  adminKc = loadKubeConfig(inject("kubeconfig"));
  admin = new KubeRest(adminKc, { qps: 0 });
  ns = await createTestNamespace(adminKc, "status-policy");
  const dataPlaneKc = await serviceAccountKubeConfig(adminKc, ["config/rbac/authz-account.yaml", "config/rbac/authz-role.yaml", "config/rbac/authz-binding.yaml"], {
    namespace: "keyward-system",
    name: "keyward-authz",
  });
  dataPlane = new KubeRest(dataPlaneKc, { qps: 0 });
  await applyManifestFiles(admin, [join(root, "config", "admission", "authz-status-policy.yaml")]);
  // The apiserver loads a new policy asynchronously: wait until a canary's change is refused
  // (each probe writes a new value, so a probe that got through before does not hide it).
  let probes = 0;
  await keyWithStatus("canary");
  await eventually(
    async () => ((await refusal(patchAsDataPlane("canary", { currentKeyId: `probe_${String(++probes)}` })))?.status === 403 ? true : undefined),
    30_000,
    "the admission policy in force",
  );
});

afterAll(async () => {
  await deleteNamespace(adminKc, ns);
  admin.close();
  dataPlane.close();
});

describe("the data plane may change only status.usage", () => {
  it("is compiled by the apiserver without type-checking warnings", async () => {
    const vap = await eventually(
      async () => {
        const p = await admin.request<{ metadata: { generation: number }; status?: { observedGeneration?: number; typeChecking?: { expressionWarnings?: unknown[] } } }>(
          "GET",
          `/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/${POLICY}`,
        );
        return p.status?.observedGeneration === p.metadata.generation ? p : undefined;
      },
      30_000,
      "the policy's type check",
    );
    expect(vap.status?.typeChecking?.expressionWarnings ?? []).toEqual([]);
  });

  it.each([
    ["adds a key hash to status.keys", { keys: [...operatorStatus.keys, { id: "key_eeeeeeee", hash: HASH_EVIL, state: "active" }] }, "keys"],
    ["replaces status.keys", { keys: [{ id: "key_eeeeeeee", hash: HASH_EVIL, state: "active" }] }, "keys"],
    ["removes status.keys", { keys: null }, "keys"],
    ["revives a key through status.state", { state: "Disabled" }, "state"],
    ["rewrites the Ready condition", { conditions: [{ ...operatorStatus.conditions[0], status: "False", reason: "Forged" }] }, "conditions"],
    ["points currentKeyId elsewhere", { currentKeyId: "key_eeeeeeee" }, "currentKeyId"],
    ["sets a field the operator has not written yet", { lastRotationAt: "2026-02-01T00:00:00Z" }, "lastRotationAt"],
  ])("is refused when it %s", async (_what, status, field) => {
    const name = `k-${field.toLowerCase()}-${Math.random().toString(36).slice(2, 7)}`;
    const before = await keyWithStatus(name);
    const err = await refusal(patchAsDataPlane(name, { ...status, usage: { requests24h: 1 } }));
    expect(err?.status).toBe(403);
    expect(err?.message).toContain(`not status.${field}`);
    const after = await getApiKey(admin, ns, name);
    expect(after?.status).toEqual(before.status);
  });

  it("still writes status.usage as the usage flusher does, and nothing else moves", async () => {
    const before = await keyWithStatus("usage");
    const usage = {
      lastUsedAt: "2026-03-01T10:00:00Z",
      requests24h: 42,
      keys: [{ id: "key_aaaaaaaa", lastUsedAt: "2026-03-01T10:00:00Z" }],
      daily: [{ date: "2026-03-01", allowed: 40, forbidden: 2 }],
    };
    const written = await patchAsDataPlane("usage", { usage });
    expect(written.status?.usage).toEqual(usage);
    const { usage: _u, ...rest } = written.status ?? {};
    expect(rest).toEqual(before.status);
    // A later flush replaces and removes usage fields (null in a merge patch).
    const again = await patchAsDataPlane("usage", { usage: { requests24h: 43, daily: null } });
    expect(again.status?.usage?.requests24h).toBe(43);
    expect(again.status?.usage?.daily).toBeUndefined();
  });

  it("changes no spec, label or annotation through /status (the apiserver keeps only status)", async () => {
    const before = await keyWithStatus("meta");
    const ak = await getApiKey(admin, ns, "meta");
    const written = await dataPlane.request<ApiKey>("PATCH", `${apiKeyPath(ns, "meta")}/status`, {
      body: {
        metadata: { resourceVersion: ak?.metadata.resourceVersion, labels: { forged: "1" }, annotations: { forged: "1" } },
        spec: { disabled: true, scopes: ["admin:all"] },
        status: { usage: { requests24h: 7 } },
      },
      contentType: "application/merge-patch+json",
    });
    expect(written.status?.usage?.requests24h).toBe(7);
    const after = await getApiKey(admin, ns, "meta");
    expect(after?.spec).toEqual(before.spec);
    expect(after?.metadata.labels).toEqual(before.metadata.labels);
    expect(after?.metadata.annotations).toEqual(before.metadata.annotations);
  });

  it("leaves the operator's writes alone: the policy matches only the data plane's identity", async () => {
    await keyWithStatus("operator-writes");
    const ak = await admin.request<ApiKey>("PATCH", `${apiKeyPath(ns, "operator-writes")}/status`, {
      body: { status: { state: "Disabled", keys: [] } },
      contentType: "application/merge-patch+json",
    });
    expect(ak.status?.state).toBe("Disabled");
  });

  it("still has no access to Secrets", async () => {
    for (const path of ["/api/v1/secrets", `/api/v1/namespaces/${ns}/secrets`]) {
      expect((await refusal(dataPlane.request("GET", path)))?.status).toBe(403);
    }
  });
});
