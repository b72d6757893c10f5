// The operator against a real kube-apiserver + kube-controller-manager:
// issuance, idempotence, self-healing, GitOps paths, rotation, expiry, disable, delete.
import { createHash } from "node:crypto";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ApiKey } from "../../src/api/types.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { verifyKey } from "../../src/keys/keymaterial.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { operatorKubeConfig } from "../support/rbac.ts";
import {
  createApiKey,
  eventsFor,
  getApiKey,
  getSecret,
  patchApiKey,
  ready,
  readyReason,
  startTestOperator,
  type TestOperator,
} from "../support/operator.ts";

let kc: KubeConfig;
let opKc: KubeConfig;
let rest: KubeRest;
let ns: string;
let op: TestOperator;
const allLogs: string[] = [];
/** Every plaintext key the tests saw in a Secret; none may appear anywhere else. */
const issuedKeys = new Set<string>();
let clockOffset = 0;
const now = (): number => Date.now() + clockOffset;

const sha = (s: string): string => `sha256:${createHash("sha256").update(s).digest("hex")}`;
const b64 = (s: string): string => Buffer.from(s).toString("base64");

async function secretKey(name: string): Promise<string | undefined> {
  const s = await getSecret(rest, ns, name);
  const v = s?.data?.["api-key"];
  if (v === undefined) return undefined;
  const key = Buffer.from(v, "base64").toString("utf8");
  issuedKeys.add(key);
  return key;
}

/** The key in a Secret, waiting for it: the Secret is written just after the status. */
const deliveredKey = (name: string): Promise<string> => eventually(() => secretKey(name), 10_000, `the key in Secret ${name}`);

const activeHash = (ak: ApiKey | undefined): string | undefined => ak?.status?.keys?.find((k) => k.state === "active")?.hash;

async function readyKey(name: string, timeoutMs = 20_000): Promise<ApiKey> {
  return eventually(
    async () => {
      const ak = await getApiKey(rest, ns, name);
      return ready(ak) === "True" && ak?.status?.observedGeneration === ak?.metadata.generation ? ak : undefined;
    },
    timeoutMs,
    `ApiKey ${name} Ready`,
  );
}

beforeAll(async () => {
  kc = loadKubeConfig(inject("kubeconfig"));
  rest = new KubeRest(kc, { qps: 0 });
  ns = await createTestNamespace(kc, "operator");
  // The operator runs with exactly the RBAC it ships.
  opKc = await operatorKubeConfig(kc);
  op = await startTestOperator(opKc, { namespaces: [ns], existingSecretResync: 500 }, now);
});

afterAll(async () => {
  allLogs.push(...op.logs);
  await op.stop();
  await deleteNamespace(kc, ns);
  rest.close();
});

describe("operator on a real control plane", () => {
  it("issues a key into an owned, labelled Secret and keeps only its hash in status", async () => {
    await createApiKey(rest, ns, "orders", { owner: "acme", scopes: ["orders:read"], prefix: "shop" });
    const ak = await readyKey("orders");
    // Status (with the hash) is written before the Secret: the key follows a moment later.
    const key = await deliveredKey("orders-apikey");
    expect(verifyKey(key)).toBe(true);
    expect(key.startsWith("shop_")).toBe(true);
    expect(ak.status?.keys).toHaveLength(1);
    expect(activeHash(ak)).toBe(sha(key));
    expect(ak.status?.currentKeyId).toMatch(/^shop_[0-9A-Za-z]{8}$/);
    expect(ak.status?.state).toBe("Active");
    expect(ak.status?.secretName).toBe("orders-apikey");
    const secret = await getSecret(rest, ns, "orders-apikey");
    expect(secret?.metadata.labels).toMatchObject({ "app.kubernetes.io/managed-by": "keyward", "keyward.dev/apikey": "orders" });
    expect(secret?.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: "ApiKey", uid: ak.metadata.uid, controller: true })]);
    const events = await eventually(async () => {
      const e = await eventsFor(rest, ns, "orders");
      return e.some((x) => x.reason === "Issued") ? e : undefined;
    }, 10_000, "Issued event");
    expect(events.find((e) => e.reason === "Issued")?.type).toBe("Normal");
  });

  it("never writes spec, so GitOps tools see no drift", async () => {
    const ak = await readyKey("orders");
    expect(ak.metadata.generation).toBe(1);
    const spec = (ak.metadata.managedFields ?? []).filter((m) => JSON.stringify(m.fieldsV1 ?? {}).includes("f:spec"));
    expect(spec.map((m) => m.manager)).not.toContain("keyward-operator");
  });

  it("re-issues nothing when the operator restarts", async () => {
    const before = await readyKey("orders");
    const keyBefore = await deliveredKey("orders-apikey");
    await op.stop();
    allLogs.push(...op.logs);
    op = await startTestOperator(kc, { namespaces: [ns], existingSecretResync: 500 }, now);
    // Wait for the new operator to reconcile this key (it requeues every cached key at start).
    expect(op.logs.some((l) => l.includes("operator caches synced"))).toBe(true);
    // A change that forces a reconcile of this object, without asking for a new key.
    await patchApiKey(rest, ns, "orders", { metadata: { labels: { poke: "1" } } });
    await eventually(
      async () => {
        const m = await op.registry.getSingleMetricAsString("keyward_operator_reconciles_total");
        return /result="unchanged"\} [1-9]/.test(m) ? true : undefined;
      },
      10_000,
      "a reconcile after restart",
    );
    const after = await getApiKey(rest, ns, "orders");
    expect(after?.status?.keys).toEqual(before.status?.keys);
    expect(await secretKey("orders-apikey")).toBe(keyBefore);
  });

  it("issues a new key with a Warning when the Secret is deleted", async () => {
    const before = await readyKey("orders");
    await rest.request("DELETE", `/api/v1/namespaces/${ns}/secrets/orders-apikey`);
    const after = await eventually(
      async () => {
        const ak = await getApiKey(rest, ns, "orders");
        return activeHash(ak) !== activeHash(before) && ready(ak) === "True" ? ak : undefined;
      },
      20_000,
      "a new key after the Secret was deleted",
    );
    const key = await eventually(() => secretKey("orders-apikey"), 10_000, "the Secret again");
    expect(activeHash(after)).toBe(sha(key));
    const events = await eventually(async () => {
      const e = await eventsFor(rest, ns, "orders");
      return e.some((x) => x.reason === "SecretMissing") ? e : undefined;
    }, 10_000, "SecretMissing event");
    expect(events.find((e) => e.reason === "SecretMissing")?.type).toBe("Warning");
  });

  it("replaces a tampered key and never accepts the tampered value", async () => {
    await readyKey("orders");
    const tampered = "shop_" + "x".repeat(49);
    await rest.request("PATCH", `/api/v1/namespaces/${ns}/secrets/orders-apikey`, {
      body: { data: { "api-key": b64(tampered) } },
      contentType: "application/merge-patch+json",
    });
    const after = await eventually(
      async () => {
        const ak = await getApiKey(rest, ns, "orders");
        const key = await secretKey("orders-apikey");
        return key && key !== tampered && activeHash(ak) === sha(key) ? ak : undefined;
      },
      20_000,
      "a new key after tampering",
    );
    expect(after.status?.keys?.some((k) => k.hash === sha(tampered))).toBe(false);
    // The Event is posted after the status write that `eventually` saw, so it is polled for too.
    const events = await eventually(async () => {
      const e = await eventsFor(rest, ns, "orders");
      return e.some((x) => x.reason === "SecretTampered") ? e : undefined;
    }, 10_000, "SecretTampered event");
    expect(events.find((e) => e.reason === "SecretTampered")?.type).toBe("Warning");
  });

  it("never overwrites a Secret it does not own", async () => {
    await rest.request("POST", `/api/v1/namespaces/${ns}/secrets`, {
      body: { metadata: { name: "taken-apikey" }, data: { "api-key": b64("someone else's value") } },
    });
    await createApiKey(rest, ns, "taken", { owner: "acme" });
    const ak = await eventually(
      async () => {
        const a = await getApiKey(rest, ns, "taken");
        return readyReason(a) === "SecretConflict" ? a : undefined;
      },
      20_000,
      "SecretConflict",
    );
    expect(ready(ak)).toBe("False");
    expect(ak.status?.state).toBe("Failed");
    expect(ak.status?.keys ?? []).toEqual([]);
    const s = await getSecret(rest, ns, "taken-apikey");
    expect(Buffer.from(s?.data?.["api-key"] ?? "", "base64").toString()).toBe("someone else's value");
    const events = await eventually(async () => {
      const e = await eventsFor(rest, ns, "taken");
      return e.some((x) => x.reason === "SecretConflict") ? e : undefined;
    }, 10_000, "SecretConflict event");
    expect(events.find((e) => e.reason === "SecretConflict")?.type).toBe("Warning");
    // The counter moves after the status write too.
    await eventually(async () => {
      const m = await op.registry.getSingleMetricAsString("keyward_operator_failures_total");
      return /reason="SecretConflict"\} [1-9]/.test(m) ? m : undefined;
    }, 10_000, "the SecretConflict failure counted");
  });

  it("hashes a key brought in an existing Secret, and re-hashes when it changes", async () => {
    const k1 = "byok-" + createHash("sha256").update("first").digest("base64url");
    const k2 = "byok-" + createHash("sha256").update("second").digest("base64url");
    issuedKeys.add(k1);
    issuedKeys.add(k2);
    await rest.request("POST", `/api/v1/namespaces/${ns}/secrets`, { body: { metadata: { name: "vault-key" }, data: { token: b64(k1) } } });
    await createApiKey(rest, ns, "byok", { owner: "initech", existingSecret: { name: "vault-key", key: "token" } });
    const first = await readyKey("byok");
    expect(activeHash(first)).toBe(sha(k1));
    await rest.request("PATCH", `/api/v1/namespaces/${ns}/secrets/vault-key`, {
      body: { data: { token: b64(k2) } },
      contentType: "application/merge-patch+json",
    });
    const second = await eventually(
      async () => {
        const a = await getApiKey(rest, ns, "byok");
        return activeHash(a) === sha(k2) ? a : undefined;
      },
      20_000,
      "re-hash after the Secret changed",
    );
    expect(second.status?.keys?.find((k) => k.state === "grace")?.hash).toBe(sha(k1));
    // The user's Secret is never written by keyward.
    const s = await getSecret(rest, ns, "vault-key");
    expect(s?.metadata.ownerReferences ?? []).toEqual([]);
  });

  it("rejects a weak key brought in an existing Secret with a clear condition", async () => {
    await rest.request("POST", `/api/v1/namespaces/${ns}/secrets`, { body: { metadata: { name: "weak" }, data: { "api-key": b64("password123") } } });
    await createApiKey(rest, ns, "weak", { owner: "initech", existingSecret: { name: "weak" } });
    const ak = await eventually(
      async () => {
        const a = await getApiKey(rest, ns, "weak");
        return readyReason(a) === "WeakKey" ? a : undefined;
      },
      20_000,
      "WeakKey",
    );
    expect(ak.status?.conditions?.find((c) => c.type === "Ready")?.message).toContain("at least 32");
    expect(ak.status?.keys ?? []).toEqual([]);
  });

  it("reports a missing existing Secret", async () => {
    await createApiKey(rest, ns, "nosecret", { owner: "initech", existingSecret: { name: "not-there" } });
    await eventually(async () => (readyReason(await getApiKey(rest, ns, "nosecret")) === "SecretNotFound" ? true : undefined), 20_000, "SecretNotFound");
  });

  it("registers a key declared only by its hash", async () => {
    const hash = sha("issued elsewhere");
    await createApiKey(rest, ns, "declared", { owner: "partner", keyHash: hash });
    const ak = await readyKey("declared");
    expect(ak.status?.keys).toEqual([expect.objectContaining({ hash, state: "active" })]);
    expect(await getSecret(rest, ns, "declared-apikey")).toBeUndefined();
  });

  it("rotates when spec.rotation.trigger changes, keeping the old key in grace until the grace period ends", async () => {
    await createApiKey(rest, ns, "rot", { owner: "acme", rotation: { gracePeriod: "4s", trigger: "1" } });
    const first = await readyKey("rot");
    const oldKey = await deliveredKey("rot-apikey");
    await patchApiKey(rest, ns, "rot", { spec: { rotation: { trigger: "2" } } });
    const rotated = await eventually(
      async () => {
        const a = await getApiKey(rest, ns, "rot");
        return a?.status?.keys?.length === 2 ? a : undefined;
      },
      20_000,
      "rotation",
    );
    const newKey = await eventually(async () => {
      const k = await secretKey("rot-apikey");
      return k !== oldKey ? k : undefined;
    }, 10_000, "the new key in the Secret");
    expect(activeHash(rotated)).toBe(sha(newKey));
    expect(rotated.status?.keys?.find((k) => k.state === "grace")?.hash).toBe(activeHash(first));
    expect(rotated.status?.state).toBe("Rotating");
    expect(rotated.status?.lastRotationAt).toBeDefined();
    // The grace period ends by itself (a timed requeue), with no further change to the object.
    const done = await eventually(
      async () => {
        const a = await getApiKey(rest, ns, "rot");
        return a?.status?.keys?.length === 1 ? a : undefined;
      },
      20_000,
      "the end of the grace period",
    );
    expect(activeHash(done)).toBe(sha(newKey));
    expect(done.status?.state).toBe("Active");
  });

  it("rotates on demand through the keyward.dev/rotate annotation", async () => {
    const before = await readyKey("rot");
    await patchApiKey(rest, ns, "rot", { metadata: { annotations: { "keyward.dev/rotate": "now-1" } } });
    const after = await eventually(
      async () => {
        const a = await getApiKey(rest, ns, "rot");
        return activeHash(a) !== activeHash(before) ? a : undefined;
      },
      20_000,
      "annotation rotation",
    );
    expect(after.status?.observedRotateAnnotation).toBe("now-1");
    await deliveredKey("rot-apikey");
  });

  it("rotates on schedule and publishes nextRotationAt", async () => {
    await createApiKey(rest, ns, "sched", { owner: "acme", rotation: { every: "1h", gracePeriod: "0s" } });
    const first = await readyKey("sched");
    const next = Date.parse(first.status?.nextRotationAt ?? "");
    const created = Date.parse(first.status?.keys?.[0]?.createdAt ?? "");
    expect(next - created).toBe(3_600_000);
    // Move the operator's clock past the schedule, then let any event wake the reconcile.
    clockOffset += 3_600_000 + 1000;
    await patchApiKey(rest, ns, "sched", { metadata: { labels: { poke: "1" } } });
    const after = await eventually(
      async () => {
        const a = await getApiKey(rest, ns, "sched");
        return activeHash(a) !== activeHash(first) ? a : undefined;
      },
      20_000,
      "scheduled rotation",
    );
    expect(after.status?.keys).toHaveLength(1); // gracePeriod 0s: the old key is gone at once
    expect(Date.parse(after.status?.nextRotationAt ?? "")).toBeGreaterThan(next);
    await deliveredKey("sched-apikey");
  });

  it("reports Expired once expiresAt passes", async () => {
    await createApiKey(rest, ns, "exp", { owner: "acme", expiresAt: new Date(now() + 3000).toISOString().replace(/\.\d+Z$/, "Z") });
    await readyKey("exp");
    const ak = await eventually(async () => {
      const a = await getApiKey(rest, ns, "exp");
      return readyReason(a) === "Expired" ? a : undefined;
    }, 20_000, "Expired");
    expect(ready(ak)).toBe("False");
    expect(ak.status?.state).toBe("Expired");
    await deliveredKey("exp-apikey");
  });

  it("disables and re-enables a key", async () => {
    await patchApiKey(rest, ns, "orders", { spec: { disabled: true } });
    const off = await eventually(async () => {
      const a = await getApiKey(rest, ns, "orders");
      return readyReason(a) === "Disabled" ? a : undefined;
    }, 20_000, "Disabled");
    expect(off.status?.state).toBe("Disabled");
    await patchApiKey(rest, ns, "orders", { spec: { disabled: false } });
    const on = await readyKey("orders");
    expect(["Active", "Rotating"]).toContain(on.status?.state); // earlier repairs left a key in grace
    expect(activeHash(on)).toBe(activeHash(off)); // re-enabling keeps the key
  });

  it("garbage-collects the Secret when the ApiKey is deleted", async () => {
    await readyKey("orders");
    expect(await getSecret(rest, ns, "orders-apikey")).toBeDefined();
    await rest.request("DELETE", `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeys/orders`);
    await eventually(async () => ((await getSecret(rest, ns, "orders-apikey")) ? undefined : true), 30_000, "the Secret to be collected");
  });

  it("never puts a plaintext key in status, Events or logs", async () => {
    allLogs.push(...op.logs);
    expect(issuedKeys.size).toBeGreaterThanOrEqual(6);
    const list = await rest.request<{ items: unknown[] }>("GET", `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeys`);
    const events = await rest.request<{ items: unknown[] }>("GET", `/api/v1/namespaces/${ns}/events`);
    const haystacks = { status: JSON.stringify(list), events: JSON.stringify(events), logs: allLogs.join("\n") };
    for (const key of issuedKeys) {
      for (const [where, text] of Object.entries(haystacks)) {
        expect(text.includes(key), `a plaintext key appeared in ${where}`).toBe(false);
      }
    }
  });
});
