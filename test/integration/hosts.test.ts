// Hosts belong to namespaces, against a real control plane: the operator (with its
// shipped RBAC) writes ApiKeyPolicy status and Events, the data plane (with its own)
// routes by the same ownership. A namespace that sorts first and applies a policy
// of its own for another tenant's host must not get its key through; a policy's
// maximums cap a key's own limits.
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ApiKeyPolicy, ApiKeyPolicySpec } from "../../src/api/types.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest, isNotFound } from "../../src/k8s/rest.ts";
import { authzClient, checkRequest, createKey, createPolicy, startAuthzEnv, summarize, type AuthzEnv, type TestKey } from "../conformance/harness.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { eventsFor, startTestOperator, type TestOperator } from "../support/operator.ts";
import { operatorKubeConfig } from "../support/rbac.ts";

const HOST = "shop.hosts.test";
const SHARED = "shared.hosts.test";
const LIMITED = "limited.caps.test";
const BASE = "/apis/keyward.dev/v1alpha1";

describe("hosts belong to namespaces", () => {
  let adminKc: KubeConfig;
  let admin: KubeRest;
  let env: AuthzEnv;
  let op: TestOperator;
  let client: ReturnType<typeof authzClient>;
  /** The victim; its name sorts after the attacker's. */
  let shop: string;
  let attacker: string;
  let partner: string;
  const keys: Record<string, TestKey> = {};

  const policyOf = async (ns: string, name: string): Promise<ApiKeyPolicy | undefined> => {
    try {
      return await admin.request<ApiKeyPolicy>("GET", `${BASE}/namespaces/${ns}/apikeypolicies/${name}`);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  };
  const accepted = (p: ApiKeyPolicy | undefined) => p?.status?.conditions?.find((c) => c.type === "Accepted");
  /** Waits for the operator to have written the policy's status for its current generation with Accepted = `want`. */
  const acceptedAs = (ns: string, name: string, want: "True" | "False") =>
    eventually(
      async () => {
        const p = await policyOf(ns, name);
        return p?.status?.observedGeneration === p?.metadata.generation && accepted(p)?.status === want ? p : undefined;
      },
      20_000,
      `ApiKeyPolicy ${ns}/${name} Accepted=${want}`,
    );
  const check = async (key: TestKey, o: { host?: string; path?: string; method?: string } = {}) =>
    summarize(await client.check(checkRequest({ host: o.host ?? HOST, path: o.path ?? "/v1/orders", method: o.method ?? "POST", headers: { "x-api-key": key.key } })));
  const until = (key: TestKey, o: Parameters<typeof check>[1], want: (r: Awaited<ReturnType<typeof check>>) => boolean, what: string) =>
    eventually(async () => {
      const r = await check(key, o);
      return want(r) ? r : undefined;
    }, 10_000, what);

  beforeAll(async () => {
    adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    shop = await createTestNamespace(adminKc, "zz-shop");
    attacker = await createTestNamespace(adminKc, "aa-attack");
    partner = await createTestNamespace(adminKc, "partner");
    const settings = { namespaces: [shop, attacker, partner], hostOwners: [`${SHARED}=${shop}`, `${SHARED}=${partner}`] };
    op = await startTestOperator(await operatorKubeConfig(adminKc), settings);
    env = await startAuthzEnv(inject("kubeconfig"), settings);
    client = authzClient(env.authz.grpcPort);
    keys.shop = await createKey(admin, shop, "writer", { scopes: ["orders:write"] });
    keys.attacker = await createKey(admin, attacker, "anyone", {});
    keys.partner = await createKey(admin, partner, "partner", {});
  });

  afterAll(async () => {
    client.close();
    await env.stop();
    await op.stop();
    admin.close();
    for (const ns of [shop, attacker, partner]) await deleteNamespace(adminKc, ns);
  });

  const shopSpec: ApiKeyPolicySpec = { hosts: [HOST], rules: [{ name: "create", paths: ["/v1/orders"], methods: ["POST"], scopes: ["orders:write"] }] };
  const openSpec: ApiKeyPolicySpec = { hosts: [HOST], rules: [{ name: "create", paths: ["/v1/orders"], methods: ["POST"] }] };

  it("refuses another namespace's same-rule policy and its key; the loser is told who owns the host", async () => {
    await createPolicy(admin, shop, "orders", shopSpec);
    const owner = await acceptedAs(shop, "orders", "True");
    expect(owner.status).toMatchObject({ observedGeneration: 1, ruleCount: 1 });
    expect(owner.status?.conflicts).toBeUndefined();
    await until(keys.shop!, {}, (r) => r.httpStatus === 200, "the shop key allowed");
    // The attacker's claim must come at least a second later (creationTimestamp has whole seconds).
    const created = Date.parse(String(owner.metadata.creationTimestamp));
    await eventually(() => (Date.now() >= created + 1000 ? true : undefined), 5_000, "the next second");

    await createPolicy(admin, attacker, "open", openSpec);
    const loser = await acceptedAs(attacker, "open", "False");
    expect(accepted(loser)).toMatchObject({ reason: "HostConflict" });
    expect(accepted(loser)?.message).toContain(`owned by namespace ${shop}`);
    expect(loser.status?.conflicts).toEqual([{ host: HOST, owners: [shop] }]);
    const warning = await eventually(async () => (await eventsFor(admin, attacker, "open")).find((e) => e.type === "Warning" && e.reason === "HostConflict"), 10_000, "the HostConflict Event");
    expect(warning.message).toContain(shop);

    // The data plane has the attacker's policy (it lists it), and still decides by the owner's.
    const r = await check(keys.attacker!);
    expect(r).toMatchObject({ httpStatus: 403, metadata: { reason: "wrong_tenant", policy: `${shop}/orders` } });
    expect(await check(keys.shop!)).toMatchObject({ httpStatus: 200, metadata: { policy: `${shop}/orders` } });
    // Nor does a more specific rule or a wildcard of the attacker's decide the owner's host.
    await createPolicy(admin, attacker, "wild", { hosts: ["*.hosts.test", HOST], rules: [{ name: "all", paths: ["/**"] }, { name: "exact", paths: ["/v1/orders/special"] }] });
    await acceptedAs(attacker, "wild", "False");
    expect(await check(keys.attacker!, { path: "/v1/orders/special" })).toMatchObject({ httpStatus: 403, metadata: { reason: "no_policy" } });
    expect(await check(keys.attacker!, { path: "/admin" })).toMatchObject({ httpStatus: 403, metadata: { reason: "no_policy" } });
    expect(await check(keys.attacker!, { host: "other.hosts.test", path: "/admin" })).toMatchObject({ httpStatus: 200, metadata: { policy: `${attacker}/wild` } });
  });

  it("passes the host to the next-oldest claim when the owner's policy is deleted", async () => {
    await admin.request("DELETE", `${BASE}/namespaces/${shop}/apikeypolicies/orders`);
    const next = await acceptedAs(attacker, "open", "True");
    expect(next.status?.conflicts).toBeUndefined();
    await until(keys.attacker!, {}, (r) => r.httpStatus === 200, "the attacker's key allowed on its own host now");
    expect((await check(keys.attacker!)).metadata.policy).toBe(`${attacker}/open`);
    // The observed generation follows spec changes.
    await admin.request("PATCH", `${BASE}/namespaces/${attacker}/apikeypolicies/open`, {
      body: { spec: { rules: [...openSpec.rules, { name: "read", paths: ["/v1/orders"], methods: ["GET"] }] } },
      contentType: "application/merge-patch+json",
    });
    const updated = await acceptedAs(attacker, "open", "True");
    expect(updated.status).toMatchObject({ observedGeneration: 2, ruleCount: 2 });
  });

  it("lets the namespaces an administrator named share a host, and refuses everyone else", async () => {
    await createPolicy(admin, shop, "shared", { hosts: [SHARED], rules: [{ name: "orders", paths: ["/v1/orders"], scopes: ["orders:write"] }] });
    await createPolicy(admin, partner, "shared", { hosts: [SHARED], rules: [{ name: "status", paths: ["/status"] }] });
    await createPolicy(admin, attacker, "shared", { hosts: [SHARED], rules: [{ name: "all", paths: ["/**"] }] });
    await acceptedAs(shop, "shared", "True");
    await acceptedAs(partner, "shared", "True");
    const refused = await acceptedAs(attacker, "shared", "False");
    expect(refused.status?.conflicts).toEqual([{ host: SHARED, owners: [partner, shop].sort() }]);
    await until(keys.shop!, { host: SHARED }, (r) => r.httpStatus === 200, "the shop key on the shared host");
    expect(await check(keys.shop!, { host: SHARED })).toMatchObject({ metadata: { policy: `${shop}/shared` } });
    expect(await check(keys.partner!, { host: SHARED, path: "/status", method: "GET" })).toMatchObject({ httpStatus: 200, metadata: { policy: `${partner}/shared` } });
    expect(await check(keys.attacker!, { host: SHARED, path: "/anything" })).toMatchObject({ httpStatus: 403, metadata: { reason: "no_policy" } });
  });

  it("caps a key's larger rate to the policy's maximum", async () => {
    await createPolicy(admin, shop, "limited", { hosts: [LIMITED], maximums: { rate: { requests: 3, per: "1h" } }, rules: [{ name: "all", paths: ["/**"] }] });
    const fast = await createKey(admin, shop, "fast", { limits: { rate: { requests: 1000, per: "1s" } } });
    await acceptedAs(shop, "limited", "True");
    // A request no rule scope refuses would spend a token; wait on a 403 from another host instead.
    await until(fast, { host: HOST }, (r) => r.metadata.reason === "no_policy" || r.metadata.reason === "wrong_tenant", "the fast key indexed");
    const first = await until(fast, { host: LIMITED }, (r) => r.httpStatus === 200, "the limited policy enforced");
    expect(first.metadata.limits_capped).toEqual(["rate"]);
    const rest = [];
    for (let i = 0; i < 4; i++) rest.push(await check(fast, { host: LIMITED }));
    expect(rest.map((r) => r.httpStatus)).toEqual([200, 200, 429, 429]);
    expect(rest[2]).toMatchObject({ metadata: { reason: "rate_limited", limits_capped: ["rate"] }, headers: { "ratelimit-limit": "3" } });
  });
});
