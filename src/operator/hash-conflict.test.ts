// The reconciler with a fake apiserver: one owner per key hash.
import { describe, expect, it } from "vitest";
import type { ApiKey, ApiKeyStatus } from "../api/types.ts";
import type { EventType } from "../k8s/events.ts";
import type { KubeRest } from "../k8s/rest.ts";
import { createLogger } from "../log.ts";
import { HashClaims } from "./claims.ts";
import { ApiKeyReconciler } from "./reconciler.ts";

const H = `sha256:${"ab".repeat(32)}`;
const NOW = Date.parse("2026-06-01T00:00:00Z");

function keyHashApiKey(ns: string, name: string, status?: ApiKeyStatus): ApiKey {
  return {
    apiVersion: "keyward.dev/v1alpha1",
    kind: "ApiKey",
    metadata: { namespace: ns, name, uid: `${name}-uid`, resourceVersion: "1", generation: 1, creationTimestamp: new Date("2026-01-01T00:00:00Z") },
    spec: { owner: "o", keyHash: H },
    ...(status ? { status } : {}),
  };
}

function setup() {
  const claims = new HashClaims();
  const patches: ApiKeyStatus[] = [];
  const events: { type: EventType; reason: string; message: string }[] = [];
  const logs: string[] = [];
  const rest = {
    request: (_method: string, _path: string, opts?: { body?: { status: ApiKeyStatus } }) => {
      if (opts?.body) patches.push(JSON.parse(JSON.stringify(opts.body.status)) as ApiKeyStatus);
      return Promise.resolve({});
    },
  } as unknown as KubeRest;
  const reconciler = new ApiKeyReconciler({
    rest,
    secrets: { get: () => undefined },
    events: { record: (_o, type, reason, message) => events.push({ type, reason, message }) },
    log: createLogger({ sink: (line) => logs.push(line), level: "debug" }),
    now: () => NOW,
    defaultGraceMs: 0,
    claims,
  });
  /** Reconciles and returns the object as the apiserver would hold it after the status write. */
  const reconcile = async (ak: ApiKey): Promise<{ ak: ApiKey; requeueAfter: number | undefined }> => {
    const before = patches.length;
    const r = await reconciler.reconcile(ak);
    const written = patches.length > before ? patches.at(-1) : undefined;
    const next: ApiKey = written ? { ...ak, status: Object.fromEntries(Object.entries(written).filter(([, v]) => v !== null)) } : ak;
    claims.update(`${ak.metadata.namespace}/${ak.metadata.name}`, next);
    return { ak: next, requeueAfter: r.requeueAfter };
  };
  return { claims, patches, events, logs, reconcile };
}

describe("reconciler: one owner per key hash", () => {
  it("marks a newer ApiKey declaring a held hash Failed/HashConflict without publishing it, and names no other ApiKey", async () => {
    const { events, logs, reconcile } = setup();
    const victim = (await reconcile(keyHashApiKey("shop", "victim"))).ak;
    expect(victim.status).toMatchObject({ state: "Active", keys: [{ hash: H, state: "active" }] });

    const { ak: attacker, requeueAfter } = await reconcile(keyHashApiKey("evil", "copy"));
    expect(attacker.status?.state).toBe("Failed");
    expect(attacker.status?.keys ?? []).toEqual([]);
    expect(attacker.status?.conditions?.find((c) => c.type === "Ready")).toMatchObject({ status: "False", reason: "HashConflict" });
    expect(requeueAfter).toBe(60_000);
    const warning = events.filter((e) => e.reason === "HashConflict");
    expect(warning).toHaveLength(1);
    expect(warning[0]?.type).toBe("Warning");
    // Neither the Event, the status nor the condition tells the attacker who holds the hash.
    for (const text of [JSON.stringify(warning), JSON.stringify(attacker.status)]) {
      expect(text).not.toMatch(/shop|victim/);
      expect(text).not.toContain(H.slice(7));
    }
    // The admin finds the holder in keyward's log.
    expect(logs.join("\n")).toMatch(/"heldBy":"shop\/victim"/);

    // Waiting: no second Event, no second log line.
    const logged = logs.length;
    await reconcile(attacker);
    expect(events.filter((e) => e.reason === "HashConflict")).toHaveLength(1);
    expect(logs.slice(logged).join("\n")).not.toContain("heldBy");
    // The victim is untouched by the attempt.
    const again = await reconcile(victim);
    expect(again.ak.status).toEqual(victim.status);
  });

  it("gives the hash to the refused ApiKey once the holder is gone, on the reconcile that wakes it", async () => {
    const { claims, reconcile } = setup();
    await reconcile(keyHashApiKey("shop", "victim"));
    const { ak: attacker } = await reconcile(keyHashApiKey("evil", "copy"));
    expect(attacker.status?.state).toBe("Failed");
    expect(claims.update("shop/victim", undefined)).toEqual(["evil/copy"]);
    const { ak: owner, requeueAfter } = await reconcile(attacker);
    expect(owner.status).toMatchObject({ state: "Active", keys: [{ hash: H, state: "active" }] });
    expect(owner.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
    expect(requeueAfter).toBeUndefined();
    expect(claims.waiting).toBe(0);
  });

  it("makes the newer of two ApiKeys that both published a hash give it up, and only that one", async () => {
    const { claims, reconcile } = setup();
    const older = keyHashApiKey("zzz", "older", { state: "Active", keys: [{ id: "key_a", hash: H, state: "active", createdAt: "2026-03-01T00:00:00Z" }] });
    const newer = keyHashApiKey("aaa", "newer", { state: "Active", keys: [{ id: "key_a", hash: H, state: "active", createdAt: "2026-03-01T00:00:01Z" }] });
    claims.update("zzz/older", older);
    expect(claims.update("aaa/newer", newer)).toEqual(["zzz/older"]);
    const kept = await reconcile(older);
    expect(kept.ak.status?.keys).toEqual(older.status?.keys);
    const dropped = await reconcile(newer);
    expect(dropped.ak.status).toMatchObject({ state: "Failed", keys: [] });
    expect(dropped.ak.status?.conditions?.find((c) => c.type === "Ready")?.reason).toBe("HashConflict");
    expect(claims.olderThan(H, { ref: "other/x", uid: "x", age: Infinity })?.ref).toBe("zzz/older");
  });

  it("drops a key in grace whose hash an older claim holds, without failing the ApiKey for it", async () => {
    const { claims, events, logs, reconcile } = setup();
    const own = `sha256:${"cd".repeat(32)}`;
    const older = keyHashApiKey("zzz", "older", { state: "Active", keys: [{ id: "key_a", hash: H, state: "active", createdAt: "2026-03-01T00:00:00Z" }] });
    claims.update("zzz/older", older);
    const rotating = {
      ...keyHashApiKey("aaa", "rotating", {
        state: "Rotating",
        keys: [
          { id: "key_b", hash: own, state: "active" as const, createdAt: "2026-05-01T00:00:00Z" },
          { id: "key_c", hash: H, state: "grace" as const, createdAt: "2026-04-01T00:00:00Z", expiresAt: "2026-07-01T00:00:00Z" },
        ],
      }),
      spec: { owner: "o", keyHash: own },
    };
    claims.update("aaa/rotating", rotating);
    const { ak } = await reconcile(rotating);
    expect(ak.status?.keys?.map((k) => k.hash)).toEqual([own]);
    expect(ak.status?.state).toBe("Active");
    expect(events.filter((e) => e.reason === "HashConflict")).toEqual([]);
    expect(logs.join("\n")).toMatch(/"heldBy":"zzz\/older"/);
  });
});
