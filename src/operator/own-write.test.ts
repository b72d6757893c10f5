// The reconciler against a fake apiserver whose writes can time out after being
// stored, or stay in flight past the next reconcile, and a Secret cache that lags
// behind the operator's own creates: keyward's own write in flight never rotates a key.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { KubernetesObject } from "@kubernetes/client-node";
import type { ApiKey, ApiKeyStatus } from "../api/types.ts";
import { ROTATE_ANNOTATION, SECRET_DATA_KEY } from "../api/types.ts";
import { KubeApiError, type KubeRest } from "../k8s/rest.ts";
import { createLogger } from "../log.ts";
import { generateKey } from "../keys/keymaterial.ts";
import { ApiKeyReconciler } from "./reconciler.ts";
import { managedLabels, toSecretView, type SecretView } from "./secrets.ts";

const NOW = Date.parse("2026-06-01T00:00:00Z");
const NS = "shop";
const NAME = "k";
const SECRET = `${NAME}-apikey`;
const UID = "uid-k";

interface StoredSecret extends KubernetesObject {
  metadata: NonNullable<KubernetesObject["metadata"]>;
  data: Record<string, string>;
}

/** How the next write of a kind misbehaves. */
type Fault = "timeoutAfterStore" | "timeoutInFlight" | "alreadyExistsAfterStore";

const timedOut = (): KubeApiError => new KubeApiError(0, "", "POST /api/v1/namespaces/shop/secrets: timed out after 30000 ms");
const fieldHash = (b64: string): string => `sha256:${createHash("sha256").update(Buffer.from(b64, "base64")).digest("hex")}`;

class FakeApiserver {
  apiKey: ApiKey;
  rv = 1;
  readonly secrets = new Map<string, StoredSecret>();
  /** Writes the apiserver took but has not stored yet. */
  readonly inFlight: (() => void)[] = [];
  readonly faults: { status?: Fault; create?: Fault; apply?: Fault } = {};
  readonly writes: string[] = [];

  constructor(apiKey: ApiKey) {
    this.apiKey = apiKey;
  }

  current(): ApiKey {
    return structuredClone({ ...this.apiKey, metadata: { ...this.apiKey.metadata, resourceVersion: String(this.rv) } });
  }

  land(): void {
    for (const f of this.inFlight.splice(0)) f();
  }

  private store(s: StoredSecret, overwrite: boolean): void {
    const name = s.metadata.name ?? "";
    if (!overwrite && this.secrets.has(name)) throw new KubeApiError(409, "AlreadyExists", `secrets "${name}" already exists`);
    this.secrets.set(name, structuredClone({ ...s, metadata: { ...s.metadata, uid: `secret-${name}` } }));
  }

  private write(kind: "create" | "apply", s: StoredSecret): Promise<KubernetesObject> {
    this.writes.push(kind);
    const fault = this.faults[kind];
    this.faults[kind] = undefined;
    const overwrite = kind === "apply";
    if (fault === "timeoutInFlight") {
      this.inFlight.push(() => {
        try {
          this.store(s, overwrite);
        } catch {
          // the late create found the Secret there: the apiserver answers a client long gone
        }
      });
      return Promise.reject(timedOut());
    }
    this.store(s, overwrite);
    if (fault === "timeoutAfterStore") return Promise.reject(timedOut());
    if (fault === "alreadyExistsAfterStore") return Promise.reject(new KubeApiError(409, "AlreadyExists", `secrets "${SECRET}" already exists`));
    return Promise.resolve(s);
  }

  readonly rest = {
    request: (method: string, path: string, opts: { body?: unknown } = {}): Promise<unknown> => {
      const secretName = /\/secrets\/([^/]+)$/.exec(path)?.[1];
      if (method === "GET" && secretName) {
        const s = this.secrets.get(secretName);
        return s ? Promise.resolve(structuredClone(s)) : Promise.reject(new KubeApiError(404, "NotFound", `secrets "${secretName}" not found`));
      }
      if (method === "PATCH" && secretName) {
        const s = this.secrets.get(secretName);
        const labels = (opts.body as { metadata: { labels: Record<string, string> } }).metadata.labels;
        if (s) s.metadata.labels = { ...s.metadata.labels, ...labels };
        return Promise.resolve(s);
      }
      if (method === "PATCH" && path.endsWith("/status")) {
        const body = opts.body as { metadata: { resourceVersion?: string }; status: Record<string, unknown> };
        if (body.metadata.resourceVersion !== String(this.rv)) return Promise.reject(new KubeApiError(409, "Conflict", "the object has been modified"));
        const prev: Record<string, unknown> = { ...this.apiKey.status };
        const merged = Object.entries({ ...prev, ...body.status }).filter(([, v]) => v !== null);
        const status: ApiKeyStatus = Object.fromEntries(merged);
        this.apiKey = { ...this.apiKey, status };
        this.rv++;
        this.writes.push("status");
        const fault = this.faults.status;
        this.faults.status = undefined;
        return fault === "timeoutAfterStore" ? Promise.reject(timedOut()) : Promise.resolve(this.current());
      }
      return Promise.reject(new Error(`fake apiserver: unexpected ${method} ${path}`));
    },
    create: (obj: StoredSecret) => this.write("create", obj),
    apply: (obj: StoredSecret) => this.write("apply", obj),
  };
}

function setup(spec: Partial<ApiKey["spec"]> = {}) {
  const api = new FakeApiserver({
    apiVersion: "keyward.dev/v1alpha1",
    kind: "ApiKey",
    metadata: { namespace: NS, name: NAME, uid: UID, resourceVersion: "1", generation: 1, creationTimestamp: new Date("2026-01-01T00:00:00Z") },
    spec: { owner: "o", rotation: { gracePeriod: "0s" }, ...spec },
  });
  const events: { type: string; reason: string; message: string }[] = [];
  const logs: string[] = [];
  const keys: string[] = [];
  /** What the operator's label-selected Secret watch has seen: by default nothing (it lags). */
  const cache = new Map<string, SecretView>();
  const reconciler = new ApiKeyReconciler({
    rest: api.rest as unknown as KubeRest,
    secrets: { get: (_ns, name) => cache.get(name) },
    events: { record: (_o, type, reason, message) => events.push({ type, reason, message }) },
    log: createLogger({ sink: (l) => logs.push(l), level: "debug" }),
    now: () => NOW,
    defaultGraceMs: 0,
    generateKey: (prefix) => {
      const k = generateKey(prefix);
      keys.push(k);
      return k;
    },
  });
  const errors: string[] = [];
  /** One reconcile of the ApiKey as the apiserver holds it now; its error, if any. */
  const reconcile = async (): Promise<unknown> => {
    try {
      await reconciler.reconcile(api.current());
      return undefined;
    } catch (err) {
      errors.push(err instanceof Error ? err.message : String(err));
      return err;
    }
  };
  const seeSecret = (): void => {
    const s = api.secrets.get(SECRET);
    if (s) cache.set(SECRET, toSecretView(s));
    else cache.delete(SECRET);
  };
  const reasons = (): string[] => events.map((e) => e.reason);
  /** The plaintext of every key made went nowhere but the Secret. */
  const expectNoPlaintextOutside = (): void => {
    const outside = JSON.stringify({ events, logs, errors, status: api.apiKey.status });
    for (const k of keys) expect(outside).not.toContain(k);
  };
  return { api, cache, events, keys, reconcile, seeSecret, reasons, expectNoPlaintextOutside };
}

type Env = ReturnType<typeof setup>;

/** The ApiKey holds one key, active, never rotated, and its Secret delivers exactly that key. */
function expectOneKeyDelivered(env: Env): void {
  const status = env.api.apiKey.status;
  expect(status?.state).toBe("Active");
  expect(status?.keys).toHaveLength(1);
  expect(status?.keys?.[0]?.state).toBe("active");
  expect(status?.lastRotationAt).toBeUndefined();
  const field = env.api.secrets.get(SECRET)?.data[SECRET_DATA_KEY];
  expect(field).toBeDefined();
  expect(fieldHash(field ?? "")).toBe(status?.keys?.[0]?.hash);
  expect(env.keys).toHaveLength(1);
  expect(env.reasons()).not.toContain("SecretMissing");
  expect(env.reasons()).not.toContain("SecretTampered");
  expect(env.reasons()).not.toContain("RotationIncomplete");
  env.expectNoPlaintextOutside();
}

describe("reconciler: keyward's own Secret write in flight", () => {
  it("writes the same key again when its create timed out and has not landed, instead of rotating", async () => {
    const env = setup();
    env.api.faults.create = "timeoutInFlight";
    expect(await env.reconcile()).toBeInstanceOf(KubeApiError);
    expect(env.api.apiKey.status?.keys).toHaveLength(1);
    // The retry runs before the create lands and before the cache saw anything.
    expect(await env.reconcile()).toBeUndefined();
    env.api.land(); // the late create meets the Secret the retry created: AlreadyExists, dropped
    expectOneKeyDelivered(env);
    expect(env.reasons()).toEqual(["Issued"]);
  });

  it("adopts the Secret when the create of the same key answers AlreadyExists because the earlier one landed", async () => {
    const env = setup();
    env.api.faults.create = "timeoutInFlight";
    await env.reconcile();
    // The retry reads the name (404), then the first create lands, then the retry's create runs.
    const origCreate = env.api.rest.create;
    env.api.rest.create = (obj) => {
      env.api.land();
      return origCreate(obj);
    };
    expect(await env.reconcile()).toBeUndefined();
    expectOneKeyDelivered(env);
  });

  it("resolves a create answered with AlreadyExists for keyward's own Secret by reading it, without failing", async () => {
    const env = setup();
    env.api.faults.create = "alreadyExistsAfterStore";
    expect(await env.reconcile()).toBeUndefined();
    expect(await env.reconcile()).toBeUndefined(); // cache still lagging: the live read finds it
    expectOneKeyDelivered(env);
    expect(env.api.writes).toEqual(["status", "create"]);
  });

  it("delivers the key after a status write that timed out but was stored", async () => {
    const env = setup();
    env.api.faults.status = "timeoutAfterStore";
    expect(await env.reconcile()).toBeInstanceOf(KubeApiError);
    expect(env.api.secrets.size).toBe(0); // the Secret is never written before the status is known
    expect(await env.reconcile()).toBeUndefined();
    expectOneKeyDelivered(env);
  });

  it("re-applies a rotated key whose apply timed out in flight instead of calling the rotation incomplete", async () => {
    const env = setup({ rotation: { gracePeriod: "1h" } });
    await env.reconcile();
    env.seeSecret();
    env.api.apiKey = { ...env.api.apiKey, metadata: { ...env.api.apiKey.metadata, annotations: { [ROTATE_ANNOTATION]: "now" } } };
    env.api.faults.apply = "timeoutInFlight";
    expect(await env.reconcile()).toBeInstanceOf(KubeApiError);
    // The cache still holds the first key; the live read does too.
    expect(await env.reconcile()).toBeUndefined();
    env.api.land();
    const status = env.api.apiKey.status;
    expect(status?.keys?.map((k) => k.state)).toEqual(["active", "grace"]);
    expect(fieldHash(env.api.secrets.get(SECRET)?.data[SECRET_DATA_KEY] ?? "")).toBe(status?.keys?.[0]?.hash);
    expect(env.keys).toHaveLength(2);
    expect(env.reasons()).toEqual(["Issued", "Rotated"]);
    env.expectNoPlaintextOutside();
  });

  it("still reports a Secret deleted after keyward's write of it landed as SecretMissing", async () => {
    const env = setup();
    await env.reconcile();
    env.seeSecret();
    env.api.secrets.delete(SECRET);
    env.seeSecret();
    await env.reconcile();
    expect(env.reasons()).toEqual(["Issued", "SecretMissing"]);
    expect(env.keys).toHaveLength(2);
    env.expectNoPlaintextOutside();
  });

  it("reads a Secret the cache has not seen before treating it as lost", async () => {
    const env = setup();
    await env.reconcile();
    const writes = env.api.writes.length;
    for (let i = 0; i < 3; i++) expect(await env.reconcile()).toBeUndefined();
    expect(env.api.writes).toHaveLength(writes);
    expectOneKeyDelivered(env);
  });
});

describe("reconciler: AlreadyExists that is not keyward's own write", () => {
  const foreign = (labels: Record<string, string> | undefined, owner: boolean, key: string): StoredSecret => ({
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: SECRET,
      namespace: NS,
      labels,
      ownerReferences: owner ? [{ apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", name: NAME, uid: UID, controller: true }] : undefined,
    },
    data: { [SECRET_DATA_KEY]: Buffer.from(key).toString("base64") },
  });

  /** The name is free when read, then someone else's Secret appears before the create. */
  function raced(secret: StoredSecret | ((ours: StoredSecret) => StoredSecret)): Env {
    const env = setup();
    const origCreate = env.api.rest.create;
    env.api.rest.create = (obj) => {
      env.api.secrets.set(SECRET, structuredClone(typeof secret === "function" ? secret(obj) : secret));
      env.api.rest.create = origCreate;
      return origCreate(obj);
    };
    return env;
  }

  it("does not adopt a Secret it does not own: the Secret is left as it was and the ApiKey fails with SecretConflict", async () => {
    const theirs = foreign(undefined, false, "someone-elses-secret-value-0123456789");
    const env = raced(theirs);
    expect(await env.reconcile()).toMatchObject({ status: 409 });
    expect(await env.reconcile()).toBeUndefined();
    expect(env.api.apiKey.status?.state).toBe("Failed");
    expect(env.api.apiKey.status?.conditions?.find((c) => c.type === "Ready")?.reason).toBe("SecretConflict");
    expect(env.api.secrets.get(SECRET)).toEqual({ ...theirs });
    expect(env.reasons()).toEqual(["SecretConflict"]);
    env.expectNoPlaintextOutside();
  });

  it("does not adopt a Secret holding this ApiKey's own key when no owner reference names this ApiKey", async () => {
    const env = raced((ours) => ({ ...ours, metadata: { name: SECRET, namespace: NS } }));
    expect(await env.reconcile()).toMatchObject({ status: 409 });
    expect(await env.reconcile()).toBeUndefined();
    expect(env.api.apiKey.status?.conditions?.find((c) => c.type === "Ready")?.reason).toBe("SecretConflict");
    expect(env.api.secrets.get(SECRET)?.metadata.ownerReferences).toBeUndefined();
    expect(env.reasons()).toEqual(["SecretConflict"]);
  });

  it("does not adopt a Secret that claims this ApiKey as owner but holds a key status does not list", async () => {
    const forged = foreign(managedLabels(setup().api.apiKey), true, "kw_forgedforgedforgedforgedforgedforgedforged00");
    const env = raced(forged);
    expect(await env.reconcile()).toMatchObject({ status: 409 });
    await env.reconcile();
    const hashes = env.api.apiKey.status?.keys?.map((k) => k.hash) ?? [];
    expect(hashes).not.toContain(fieldHash(forged.data[SECRET_DATA_KEY] ?? ""));
    // The forged content is replaced by a key keyward made, as for any Secret changed outside keyward.
    expect(env.reasons()).toEqual(["SecretTampered"]);
    expect(fieldHash(env.api.secrets.get(SECRET)?.data[SECRET_DATA_KEY] ?? "")).toBe(env.api.apiKey.status?.keys?.[0]?.hash);
    env.expectNoPlaintextOutside();
  });
});
