import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { KubeRest } from "../k8s/rest.ts";
import { ApiAuth, KubeReviewer, TtlCache, type ReviewedUser } from "./api-auth.ts";
import { FakeReviewer } from "./api-fixtures.test-support.ts";

describe("TtlCache", () => {
  it("forgets entries after the TTL and holds at most its size, dropping the oldest", () => {
    let now = 0;
    const c = new TtlCache<number>(2, 1000, () => now);
    c.set("a", 1);
    c.set("b", 2);
    c.set("c", 3);
    expect(c.size).toBe(2);
    expect(c.get("a")).toBeUndefined();
    expect(c.get("b")).toBe(2);
    now = 1000;
    expect(c.get("c")).toBeUndefined();
  });

  it("keeps nothing with a TTL of 0", () => {
    const c = new TtlCache<number>(10, 0);
    c.set("a", 1);
    expect(c.get("a")).toBeUndefined();
  });
});

describe("ApiAuth", () => {
  const alice: ReviewedUser = { username: "alice", groups: ["team-a"] };

  it("reviews a token once per TTL, under its SHA-256, and caches a refusal too", async () => {
    let now = 0;
    const r = new FakeReviewer({ "tok-a": alice }, { alice: ["team-a"] });
    const auth = new ApiAuth(r, { audiences: [], cacheTtlMs: 10_000, now: () => now });
    const caller = await auth.authenticate("tok-a");
    expect(caller?.user.username).toBe("alice");
    expect(caller?.tokenHash).toBe(createHash("sha256").update("tok-a").digest("hex"));
    expect(JSON.stringify(caller)).not.toContain("tok-a");
    await auth.authenticate("tok-a");
    expect(await auth.authenticate("forged")).toBeUndefined();
    expect(await auth.authenticate("forged")).toBeUndefined();
    expect(r.tokenReviews).toBe(2);
    now = 10_000;
    await auth.authenticate("tok-a");
    expect(r.tokenReviews).toBe(3);
  });

  it("caches access per token and namespace, and asks again after the TTL", async () => {
    let now = 0;
    const r = new FakeReviewer({ "tok-a": alice }, { alice: ["team-a"] });
    const auth = new ApiAuth(r, { audiences: [], cacheTtlMs: 10_000, now: () => now });
    const caller = (await auth.authenticate("tok-a"))!;
    expect(await auth.may(caller, "team-a")).toBe(true);
    expect(await auth.may(caller, "team-b")).toBe(false);
    expect(await auth.may(caller, "team-a")).toBe(true);
    expect(r.accessReviews).toEqual(["alice@team-a", "alice@team-b"]);
    now = 10_001;
    await auth.may(caller, "team-a");
    expect(r.accessReviews).toHaveLength(3);
  });

  it("never caches a failed review, and reports it as KubernetesRequestFailed", async () => {
    const r = new FakeReviewer({ "tok-a": alice }, { alice: ["team-a"] });
    const auth = new ApiAuth(r, { audiences: [], cacheTtlMs: 10_000 });
    r.failing = true;
    await expect(auth.authenticate("tok-a")).rejects.toMatchObject({ code: "KubernetesRequestFailed" });
    r.failing = false;
    const caller = await auth.authenticate("tok-a");
    expect(caller).toBeDefined();
    r.failing = true;
    await expect(auth.may(caller!, "team-a")).rejects.toMatchObject({ code: "KubernetesRequestFailed" });
    r.failing = false;
    expect(await auth.may(caller!, "team-a")).toBe(true);
  });

  it("keeps the namespaces the caller may see among the candidates, in order", async () => {
    const r = new FakeReviewer({ "tok-a": alice }, { alice: ["n3", "n1"] });
    const auth = new ApiAuth(r, { audiences: [], cacheTtlMs: 0, reviewConcurrency: 2 });
    const caller = (await auth.authenticate("tok-a"))!;
    expect(await auth.allowedAmong(caller, ["n1", "n2", "n3", "n4", "n5"])).toEqual(["n1", "n3"]);
    expect(await auth.allowedAmong(caller, [])).toEqual([]);
  });
});

describe("KubeReviewer", () => {
  function restAnswering(status: unknown, sent: unknown[]): KubeRest {
    return {
      request: (_m: string, path: string, o: { body?: unknown }) => {
        sent.push({ path, body: o.body });
        return Promise.resolve({ status });
      },
    } as unknown as KubeRest;
  }

  it("sends the token and audiences in a TokenReview and takes the user only when authenticated for an audience asked", async () => {
    const sent: unknown[] = [];
    const user = { username: "system:serviceaccount:a:reader", uid: "1", groups: ["system:serviceaccounts"] };
    expect(await new KubeReviewer(restAnswering({ authenticated: true, user, audiences: ["keyward"] }, sent)).reviewToken("t", ["keyward"])).toEqual(user);
    expect(sent[0]).toMatchObject({ path: "/apis/authentication.k8s.io/v1/tokenreviews", body: { spec: { token: "t", audiences: ["keyward"] } } });
    // An apiserver answering without the audience asked for: not authenticated.
    expect(await new KubeReviewer(restAnswering({ authenticated: true, user }, [])).reviewToken("t", ["keyward"])).toBeUndefined();
    expect(await new KubeReviewer(restAnswering({ authenticated: false, error: "invalid" }, [])).reviewToken("t", [])).toBeUndefined();
    expect(await new KubeReviewer(restAnswering({ authenticated: true, user }, [])).reviewToken("t", [])).toEqual(user);
  });

  it("asks a SubjectAccessReview for get apikeys.keyward.dev with the user's groups, in a namespace or cluster-wide", async () => {
    const sent: { body: { spec: { resourceAttributes: Record<string, string> } } }[] = [];
    const r = new KubeReviewer(restAnswering({ allowed: true }, sent));
    const user = { username: "bob", uid: "u", groups: ["g"], extra: { scopes: ["x"] } };
    expect(await r.mayGetApiKeys(user, "team-a")).toBe(true);
    expect(await r.mayGetApiKeys(user, "")).toBe(true);
    expect(sent[0]).toMatchObject({ body: { spec: { user: "bob", uid: "u", groups: ["g"], extra: { scopes: ["x"] }, resourceAttributes: { group: "keyward.dev", resource: "apikeys", verb: "get", namespace: "team-a" } } } });
    expect(sent[1]?.body.spec.resourceAttributes).not.toHaveProperty("namespace");
    expect(await new KubeReviewer(restAnswering({ allowed: false }, [])).mayGetApiKeys(user, "x")).toBe(false);
    expect(await new KubeReviewer(restAnswering({}, [])).mayGetApiKeys(user, "x")).toBe(false);
  });
});
