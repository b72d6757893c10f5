// One owner per key hash, on a real control plane: the operator and the data plane,
// each with the RBAC it ships. A tenant that copies another tenant's key hash (readable
// by anyone who can get ApiKeys) into an ApiKey of its own neither takes the key over
// nor switches it off; it gets the hash only once the owner is gone.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ApiKey } from "../../src/api/types.ts";
import { createLogger } from "../../src/log.ts";
import {
  authzClient,
  checkRequest,
  createPolicy,
  generateKey,
  startAuthzEnv,
  summarize,
  writeKeyStatus,
  type AuthzEnv,
} from "../conformance/harness.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { operatorKubeConfig } from "../support/rbac.ts";
import { apiKeyPath, createApiKey, eventsFor, getApiKey, patchApiKey, ready, readyReason, startTestOperator, type TestOperator } from "../support/operator.ts";

const HOST = "hashes.example.com";

describe("one owner per key hash", () => {
  let env: AuthzEnv;
  let op: TestOperator;
  let victimNs: string;
  let attackerNs: string;
  let client: ReturnType<typeof authzClient>;
  const authzLogs: string[] = [];
  const key = generateKey("kwh");

  beforeAll(async () => {
    env = await startAuthzEnv(inject("kubeconfig"), {}, createLogger({ level: "debug", sink: (l) => authzLogs.push(l) }));
    victimNs = await createTestNamespace(env.adminKc, "hash-victim");
    attackerNs = await createTestNamespace(env.adminKc, "hash-attacker");
    op = await startTestOperator(await operatorKubeConfig(env.adminKc), { namespaces: [victimNs, attackerNs] });
    client = authzClient(env.authz.grpcPort);
    await createPolicy(env.admin, victimNs, "api", {
      hosts: [HOST],
      credentials: { headers: ["x-api-key"] },
      keys: { namespaces: [victimNs, attackerNs] },
      rules: [{ name: "all", paths: ["/**"] }],
    });
  });

  afterAll(async () => {
    client.close();
    await op.stop();
    await env.stop();
    await deleteNamespace(env.adminKc, victimNs);
    await deleteNamespace(env.adminKc, attackerNs);
  });

  const check = async () => summarize(await client.check(checkRequest({ host: HOST, path: "/v1/x", headers: { "x-api-key": key.key } })));
  const get = async (ns: string, name: string): Promise<ApiKey> => {
    const ak = await getApiKey(env.admin, ns, name);
    if (!ak) throw new Error(`ApiKey ${ns}/${name} is gone`);
    return ak;
  };
  const failedWithConflict = (ns: string, name: string) =>
    eventually(async () => {
      const ak = await get(ns, name);
      return ak.status?.state === "Failed" && readyReason(ak) === "HashConflict" && !ak.status.keys?.some((k) => k.hash === key.hash) ? ak : undefined;
    }, 20_000, `${ns}/${name} Failed with HashConflict`);
  /** Several checks in a row, all answered for the victim. */
  const victimStillServed = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) {
      const r = await check();
      expect(r, JSON.stringify(r.metadata)).toMatchObject({ httpStatus: 200, metadata: { apikey: `${victimNs}/victim`, owner: "victim" } });
    }
  };

  it("refuses a later ApiKey declaring a held hash (Failed/HashConflict, a Warning Event naming no one) and keeps the owner's key working", async () => {
    // An ApiKey the attacker made long before, declaring a hash of its own: a sleeper.
    await createApiKey(env.admin, attackerNs, "sleeper", { owner: "mallory", keyHash: generateKey("kwh").hash });
    await eventually(async () => (ready(await get(attackerNs, "sleeper")) === "True" ? true : undefined), 20_000, "the sleeper Ready");

    await createApiKey(env.admin, victimNs, "victim", { owner: "victim", keyHash: key.hash, scopes: ["api"] });
    const victim = await eventually(async () => {
      const ak = await get(victimNs, "victim");
      return ready(ak) === "True" ? ak : undefined;
    }, 20_000, "the victim Ready");
    await eventually(async () => ((await check()).httpStatus === 200 ? true : undefined), 10_000, "the victim's key accepted");

    // The hash, as anyone who can get ApiKeys reads it from the victim's status.
    const stolen = victim.status?.keys?.[0]?.hash;
    expect(stolen).toBe(key.hash);
    await createApiKey(env.admin, attackerNs, "copy", { owner: "mallory", keyHash: stolen ?? "", scopes: ["api"] });
    const copy = await failedWithConflict(attackerNs, "copy");
    expect(copy.status?.keys ?? []).toEqual([]);
    // The sleeper, older than the victim's ApiKey, edited to declare the hash: refused alike.
    await patchApiKey(env.admin, attackerNs, "sleeper", { spec: { keyHash: stolen } });
    await failedWithConflict(attackerNs, "sleeper");

    for (const name of ["copy", "sleeper"]) {
      const events = await eventually(async () => {
        const list = await eventsFor(env.admin, attackerNs, name);
        return list.some((e) => e.reason === "HashConflict") ? list : undefined;
      }, 10_000, `the HashConflict Event of ${name}`);
      const warnings = events.filter((e) => e.reason === "HashConflict");
      expect(warnings.map((e) => e.type)).toEqual(["Warning"]);
      // What the attacker can read names neither the victim nor its namespace.
      const readable = JSON.stringify([warnings, (await get(attackerNs, name)).status]);
      expect(readable).not.toContain(victimNs);
      expect(readable).not.toContain("victim");
    }
    // keyward's own log tells the administrator who holds the hash.
    expect(op.logs.join("\n")).toContain(`"heldBy":"${victimNs}/victim"`);

    const after = await get(victimNs, "victim");
    expect(after.status).toMatchObject({ state: "Active", keys: [{ hash: key.hash, state: "active" }] });
    expect(ready(after)).toBe("True");
    await victimStillServed();
  });

  it("keeps serving the owner when a newer claim reaches a status anyway, and the operator takes it back out", async () => {
    // As if written by a stale or foreign writer: the copy publishes the hash, dated (truthfully) after the victim's claim.
    const since = Date.parse((await get(victimNs, "victim")).status?.keys?.[0]?.createdAt ?? "");
    expect(Number.isNaN(since)).toBe(false);
    await writeKeyStatus(env.admin, attackerNs, "copy", [{ id: "key_copy", hash: key.hash, state: "active", createdAt: new Date(since + 2000).toISOString() }]);
    await victimStillServed();
    await failedWithConflict(attackerNs, "copy");
    await victimStillServed();
  });

  it("hands the hash to the waiting claim once the owner is deleted, without waiting for the periodic re-check", async () => {
    await env.admin.request("DELETE", apiKeyPath(attackerNs, "sleeper"));
    await env.admin.request("DELETE", apiKeyPath(victimNs, "victim"));
    const t0 = Date.now();
    const owner = await eventually(async () => {
      const copy = await get(attackerNs, "copy");
      return copy.status?.state === "Active" && copy.status.keys?.some((k) => k.hash === key.hash && k.state === "active") ? copy : undefined;
    }, 20_000, "the waiting ApiKey to take the hash");
    // Woken by the owner letting go, not by the 60 s re-check of a failed ApiKey.
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(ready(owner)).toBe("True");
    const r = await eventually(async () => {
      const s = await check();
      return s.httpStatus === 200 && s.metadata.apikey === `${attackerNs}/copy` ? s : undefined;
    }, 10_000, "the data plane to follow");
    expect(r.metadata.owner).toBe("mallory");

    const everything = [...op.logs, ...authzLogs].join("\n");
    expect(everything).not.toContain(key.key);
  });
});
