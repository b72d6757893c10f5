import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { ApiKey, KeyVersion } from "../api/types.ts";
import { apiKey, newKey } from "../api/fixtures.test-support.ts";
import { KeyIndex, keyDigest } from "./keys.ts";

/** An ApiKey whose claim on each version's hash dates from `createdAt` (status.keys[].createdAt). */
function claimant(ns: string, name: string, versions: KeyVersion[], createdAt: string | undefined, spec: Partial<ApiKey["spec"]> = {}): ApiKey {
  return apiKey(ns, name, spec, versions.map((v) => (createdAt ? { ...v, createdAt } : v)));
}

/** Every order of `items`. */
function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((x, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [x, ...rest]));
}

describe("KeyIndex", () => {
  it("is keyed by the raw sha256 digest of the key, not its hex form", () => {
    const idx = new KeyIndex();
    const a = newKey("p_aaaaaaaa");
    idx.apply("add", apiKey("ns", "k", {}, [a.version]));
    const raw = createHash("sha256").update(a.key).digest();
    expect(keyDigest(a.key)).toHaveLength(32);
    expect(Buffer.from(keyDigest(a.key), "latin1").equals(raw)).toBe(true);
    expect(idx.lookup(keyDigest(a.key))?.id).toBe("p_aaaaaaaa");
    expect(idx.lookup(raw.toString("hex"))).toBeUndefined();
    expect(idx.lookup(keyDigest(`${a.key}x`))).toBeUndefined();
  });

  it("derives name and namespace from the ref, and falls back to the ref without a uid", () => {
    const idx = new KeyIndex();
    const [a, b] = [newKey("p_a"), newKey("p_b")];
    idx.apply("add", apiKey("team-a", "orders/client", {}, [a.version])); // a name the apiserver refuses, still split at the first slash
    const noUid = apiKey("team-b", "k", { owner: "bob" }, [b.version]);
    delete noUid.metadata.uid;
    idx.apply("add", noUid);
    const ra = idx.lookup(keyDigest(a.key))!.record;
    expect([ra.ref, ra.namespace, ra.name, ra.uid, ra.owner]).toEqual(["team-a/orders/client", "team-a", "orders/client", "team-a-orders/client-uid", "acme"]);
    const rb = idx.lookup(keyDigest(b.key))!.record;
    expect([rb.ref, rb.namespace, rb.name, rb.uid, rb.owner]).toEqual(["team-b/k", "team-b", "k", "team-b/k", "bob"]);
  });

  it("replaces an ApiKey's entries on each event and leaves the entries it replaced as they were", () => {
    const idx = new KeyIndex();
    const a = newKey("p_a");
    const b = newKey("p_b", "grace", "2030-01-01T00:00:00Z");
    const obj = apiKey("ns", "k", { scopes: ["r"] }, [a.version, b.version]);
    idx.apply("add", obj);
    const before = idx.lookup(keyDigest(a.key))!;
    const graceBefore = idx.lookup(keyDigest(b.key))!;
    expect(before.record).toBe(before); // the record's fields do not depend on the hash
    expect(graceBefore.record.ref).toBe("ns/k");
    idx.apply("update", { ...obj, spec: { ...obj.spec, disabled: true, expiresAt: "2031-01-01T00:00:00Z", limits: { rate: { requests: 5, per: "1s" } } } });
    const after = idx.lookup(keyDigest(a.key))!;
    expect(after).not.toBe(before);
    expect(idx.lookup(keyDigest(b.key))).not.toBe(graceBefore);
    expect([after.record.disabled, after.record.expiresAtMs, after.record.limits.rate?.requests, after.validUntilMs]).toEqual([true, Date.parse("2031-01-01T00:00:00Z"), 5, Infinity]);
    expect(idx.lookup(keyDigest(b.key))!.validUntilMs).toBe(Date.parse("2030-01-01T00:00:00Z"));
    expect([before.record.disabled, before.record.expiresAtMs, before.record.limits.rate, before.validUntilMs]).toEqual([false, Infinity, undefined, Infinity]);
    expect(graceBefore.validUntilMs).toBe(Date.parse("2030-01-01T00:00:00Z"));
    // The same content again is still a new entry: a watch event always replaces.
    idx.apply("update", obj);
    const again = idx.lookup(keyDigest(a.key))!;
    expect(again).not.toBe(after);
    expect(again.record.disabled).toBe(false);
    expect(idx.size).toBe(2);
    expect(idx.apiKeyCount).toBe(1);
  });

  it("keeps an ApiKey without hashes counted, and indexes it once it gets one", () => {
    const idx = new KeyIndex();
    const a = newKey("p_a");
    idx.apply("add", apiKey("ns", "k", {}, []));
    expect([idx.size, idx.apiKeyCount]).toEqual([0, 1]);
    idx.apply("update", apiKey("ns", "k", {}, [a.version]));
    expect([idx.size, idx.apiKeyCount]).toEqual([1, 1]);
    expect(idx.lookup(keyDigest(a.key))?.record.ref).toBe("ns/k");
    idx.apply("update", apiKey("ns", "k", {}, []));
    expect([idx.size, idx.apiKeyCount]).toEqual([0, 1]);
    idx.apply("delete", apiKey("ns", "k", {}, []));
    expect([idx.size, idx.apiKeyCount]).toEqual([0, 0]);
  });

  it("indexes the active key and keys in grace, and drops a rotated-out hash on update", () => {
    const idx = new KeyIndex();
    const a = newKey("p_aaaaaaaa");
    const b = newKey("p_bbbbbbbb", "grace", "2030-01-01T00:00:00Z");
    const obj = apiKey("ns", "k", { scopes: ["s"] }, [a.version, b.version]);
    idx.apply("add", obj);
    expect(idx.lookup(keyDigest(a.key))?.id).toBe("p_aaaaaaaa");
    expect(idx.lookup(keyDigest(b.key))?.validUntilMs).toBe(Date.parse("2030-01-01T00:00:00Z"));
    idx.apply("update", { ...obj, status: { keys: [a.version] } });
    expect(idx.lookup(keyDigest(b.key))).toBeUndefined();
    expect(idx.size).toBe(1);
    idx.apply("delete", obj);
    expect(idx.lookup(keyDigest(a.key))).toBeUndefined();
    expect(idx.apiKeyCount).toBe(0);
  });

  it("treats a key in grace without an end, or with an unreadable one, as ended", () => {
    const idx = new KeyIndex();
    const [open, bad, dated] = [newKey("p_open", "grace"), newKey("p_bad", "grace", "soon"), newKey("p_dated", "grace", "2030-01-01T00:00:00Z")];
    idx.apply("add", apiKey("ns", "k", {}, [newKey("p_active").version, open.version, bad.version, dated.version]));
    expect(idx.lookup(keyDigest(open.key))?.validUntilMs).toBe(-Infinity);
    expect(idx.lookup(keyDigest(bad.key))?.validUntilMs).toBe(-Infinity);
    expect(idx.lookup(keyDigest(dated.key))?.validUntilMs).toBe(Date.parse("2030-01-01T00:00:00Z"));
  });

  it("reads disabled and expired from spec and status, and accepts upper-case hex", () => {
    const idx = new KeyIndex();
    const a = newKey("p_a");
    const upper = { ...a.version, hash: a.version.hash.replace(/[0-9a-f]{64}$/, (h) => h.toUpperCase()) };
    idx.apply("add", { ...apiKey("ns", "k", {}, [upper]), status: { state: "Expired", keys: [upper] } });
    expect(idx.lookup(keyDigest(a.key))?.record.expiresAtMs).toBe(-Infinity);
    idx.apply("update", { ...apiKey("ns", "k", { disabled: true }, [a.version]) });
    expect(idx.lookup(keyDigest(a.key))?.record.disabled).toBe(true);
  });

  it("skips malformed hashes and unparseable sources, failing closed", () => {
    const problems: string[] = [];
    const idx = new KeyIndex({ onInvalid: (_ref, what) => problems.push(what) });
    const a = newKey("p_a");
    idx.apply("add", apiKey("ns", "k", { allowedSources: ["not-a-cidr"], expiresAt: "soon" }, [a.version, { id: "bad", hash: "md5:xyz", state: "active" }]));
    expect(idx.size).toBe(1);
    const rec = idx.lookup(keyDigest(a.key))?.record;
    expect(rec?.sources?.ranges).toEqual([]);
    expect(rec?.expiresAtMs).toBe(-Infinity);
    expect(problems).toHaveLength(3);
  });

  it("counts an ApiKey once whatever number of hashes it has", () => {
    const idx = new KeyIndex();
    const a = newKey("p_a");
    const b = newKey("p_b", "grace", "2030-01-01T00:00:00Z");
    idx.apply("add", apiKey("ns", "none", {}, []));
    idx.apply("add", apiKey("ns", "one", {}, [a.version]));
    idx.apply("add", apiKey("ns", "two", {}, [{ ...a.version, hash: newKey("x").version.hash }, b.version]));
    expect(idx.apiKeyCount).toBe(3);
    expect(idx.size).toBe(3);
    idx.apply("update", apiKey("ns", "one", {}, [a.version, newKey("p_c").version]));
    idx.apply("update", apiKey("ns", "two", {}, [b.version]));
    expect(idx.size).toBe(3);
    expect(idx.lookup(keyDigest(a.key))?.record.ref).toBe("ns/one");
    for (const n of ["none", "one", "two"]) idx.apply("delete", apiKey("ns", n, {}, []));
    expect(idx.size).toBe(0);
    expect(idx.apiKeyCount).toBe(0);
  });

  it("shares scopes, labels and empty limits between keys without one key's change reaching another", () => {
    const idx = new KeyIndex();
    const [a, b, c] = [newKey("p_a"), newKey("p_b"), newKey("p_c")];
    idx.apply("add", apiKey("ns", "a", { scopes: ["r", "w"] }, [a.version], { tier: "pro" }));
    idx.apply("add", apiKey("ns", "b", { scopes: ["r", "w"] }, [b.version], { tier: "pro" }));
    idx.apply("add", apiKey("ns", "c", { scopes: ["w", "r"], limits: { rate: { requests: 10, per: "1m" } } }, [c.version], { tier: "free" }));
    const ra = idx.lookup(keyDigest(a.key))!.record;
    const rb = idx.lookup(keyDigest(b.key))!.record;
    const rc = idx.lookup(keyDigest(c.key))!.record;
    expect(rb.scopes).toBe(ra.scopes);
    expect(rb.scopeList).toBe(ra.scopeList);
    expect(rb.labels).toBe(ra.labels);
    expect(rb.limits).toBe(ra.limits);
    expect(ra.limits).toEqual({ rate: undefined, quota: undefined });
    expect(Object.isFrozen(ra.scopeList) && Object.isFrozen(ra.labels) && Object.isFrozen(ra.limits)).toBe(true);
    // Same scopes in another order: the order is kept.
    expect(rc.scopeList).toEqual(["w", "r"]);
    expect(rc.labels).toEqual({ tier: "free" });
    expect(rc.limits.rate?.requests).toBe(10);

    idx.apply("update", apiKey("ns", "a", { scopes: ["r"] }, [a.version], { tier: "free", team: "x" }));
    const ra2 = idx.lookup(keyDigest(a.key))!.record;
    expect([...ra2.scopes]).toEqual(["r"]);
    expect(ra2.labels).toEqual({ tier: "free", team: "x" });
    const rb2 = idx.lookup(keyDigest(b.key))!.record;
    expect(rb2).toBe(rb);
    expect([...rb2.scopes]).toEqual(["r", "w"]);
    expect(rb2.scopes.has("w")).toBe(true);
    expect(rb2.scopeList).toEqual(["r", "w"]);
    expect(rb2.labels).toEqual({ tier: "pro" });
    expect(rc.labels).toEqual({ tier: "free" });
  });

  it("shares scopes and labels between keys in different namespaces, until the last of them goes", () => {
    const idx = new KeyIndex();
    const [a, b] = [newKey("p_a"), newKey("p_b")];
    const objA = apiKey("one", "a", { scopes: ["r"] }, [a.version], { tier: "pro" });
    const objB = apiKey("two", "b", { scopes: ["r"] }, [b.version], { tier: "pro" });
    idx.apply("add", objA);
    idx.apply("add", objB);
    const first = idx.lookup(keyDigest(a.key))!.record;
    const rb = idx.lookup(keyDigest(b.key))!.record;
    expect([first.namespace, rb.namespace]).toEqual(["one", "two"]);
    expect(rb.scopes).toBe(first.scopes);
    expect(rb.labels).toBe(first.labels);
    idx.apply("delete", objA);
    idx.apply("add", objA);
    expect(idx.lookup(keyDigest(a.key))!.record.scopes).toBe(first.scopes); // b held them meanwhile
    idx.apply("delete", objA);
    idx.apply("delete", objB);
    idx.apply("add", objA);
    const again = idx.lookup(keyDigest(a.key))!.record;
    expect(again.scopes).not.toBe(first.scopes);
    expect(again.labels).not.toBe(first.labels);
  });

  it("keeps shared values only while a key holds them", () => {
    const idx = new KeyIndex();
    const [a, b] = [newKey("p_a"), newKey("p_b")];
    const objA = apiKey("ns", "a", { scopes: ["r"] }, [a.version], { tier: "pro" });
    const objB = apiKey("ns", "b", { scopes: ["r"] }, [b.version], { tier: "pro" });
    idx.apply("add", objA);
    const first = idx.lookup(keyDigest(a.key))!.record;
    // An update with the same content keeps the shared values.
    idx.apply("update", objA);
    expect(idx.lookup(keyDigest(a.key))!.record.scopes).toBe(first.scopes);
    idx.apply("add", objB);
    idx.apply("delete", objA);
    idx.apply("add", objA);
    expect(idx.lookup(keyDigest(a.key))!.record.scopes).toBe(first.scopes); // b held them meanwhile
    idx.apply("delete", objA);
    idx.apply("delete", objB);
    idx.apply("add", objA);
    const again = idx.lookup(keyDigest(a.key))!.record;
    expect(again.scopes).not.toBe(first.scopes); // forgotten once no key held them
    expect(again.labels).not.toBe(first.labels);
    expect([...again.scopes]).toEqual(["r"]);
    expect(again.labels).toEqual({ tier: "pro" });
  });
});

describe("KeyIndex: a hash more than one ApiKey claims", () => {
  const shared = newKey("p_shared");
  const victim = claimant("shop", "victim", [shared.version], "2026-01-01T00:00:00Z", { scopes: ["orders:read"] });
  const second = claimant("mallory", "copy", [{ ...shared.version, id: "p_copy" }], "2026-02-01T00:00:00Z", { disabled: true });
  const third = claimant("aaa", "late", [{ ...shared.version, id: "p_late" }], "2026-03-01T00:00:00Z", { scopes: [] });
  const owner = (idx: KeyIndex): string | undefined => idx.lookup(keyDigest(shared.key))?.record.ref;

  it("belongs to the oldest claim whatever order the claims arrive in", () => {
    for (const order of permutations([victim, second, third])) {
      const idx = new KeyIndex();
      for (const k of order) idx.apply("add", k);
      const entry = idx.lookup(keyDigest(shared.key));
      expect(entry?.record.ref, order.map((k) => k.metadata.name).join(",")).toBe("shop/victim");
      // The owner's own entry, none of the others' fields.
      expect([entry?.id, entry?.record.disabled, [...(entry?.record.scopes ?? [])]]).toEqual(["p_shared", false, ["orders:read"]]);
      expect([idx.size, idx.apiKeyCount]).toEqual([1, 3]);
    }
  });

  it("passes to the next oldest claim when the owner is deleted or lets go, and back when an older claim returns", () => {
    for (const order of permutations([victim, second, third])) {
      const idx = new KeyIndex();
      for (const k of order) idx.apply("add", k);
      idx.apply("delete", victim);
      expect(owner(idx)).toBe("mallory/copy");
      expect(idx.lookup(keyDigest(shared.key))?.record.disabled).toBe(true);
      idx.apply("update", claimant("mallory", "copy", [], undefined)); // lets go of the hash
      expect(owner(idx)).toBe("aaa/late");
      idx.apply("add", victim);
      expect(owner(idx)).toBe("shop/victim");
      for (const k of [victim, third]) idx.apply("delete", k);
      expect(idx.lookup(keyDigest(shared.key))).toBeUndefined();
      expect([idx.size, idx.apiKeyCount]).toEqual([0, 1]);
    }
  });

  it("keeps its owner through updates and relists of every claimant in any order", () => {
    const idx = new KeyIndex();
    for (const k of [third, second, victim]) idx.apply("add", k);
    for (const order of permutations([victim, second, third])) {
      for (const k of order) idx.apply("update", { ...k, metadata: { ...k.metadata, resourceVersion: "2" } });
      expect(owner(idx)).toBe("shop/victim");
    }
    // The owner's own changes reach the published entry.
    idx.apply("update", { ...victim, spec: { ...victim.spec, scopes: ["orders:write"] } });
    expect([...(idx.lookup(keyDigest(shared.key))?.record.scopes ?? [])]).toEqual(["orders:write"]);
    idx.apply("update", second);
    expect([...(idx.lookup(keyDigest(shared.key))?.record.scopes ?? [])]).toEqual(["orders:write"]);
  });

  it("dates a claim by when the hash entered the status, not by when the ApiKey was created", () => {
    const idx = new KeyIndex();
    // An ApiKey created long ago that declares the hash today is the newer claim.
    const sleeper = claimant("mallory", "old", [{ ...shared.version, id: "p_old" }], "2026-06-01T00:00:00Z");
    sleeper.metadata.creationTimestamp = new Date("2021-01-01T00:00:00Z");
    const young = { ...victim, metadata: { ...victim.metadata, creationTimestamp: new Date("2025-12-31T00:00:00Z") } };
    idx.apply("add", sleeper);
    idx.apply("add", young);
    expect(owner(idx)).toBe("shop/victim");
    // The owner that drops the hash and claims it again makes a new, newer claim.
    idx.apply("update", claimant("shop", "victim", [], undefined));
    idx.apply("update", claimant("shop", "victim", [shared.version], "2026-07-01T00:00:00Z"));
    expect(owner(idx)).toBe("mallory/old");
  });

  it("falls back to creationTimestamp without createdAt, ranks an undated claim newest, and orders equal ages by uid, not by name", () => {
    const undated = claimant("aaa", "undated", [{ ...shared.version, id: "p_u" }], undefined);
    const created = claimant("zzz", "created", [{ ...shared.version, id: "p_c" }], undefined);
    created.metadata.creationTimestamp = new Date("2026-05-01T00:00:00Z");
    created.metadata.uid = "0e1d";
    const same = claimant("bbb", "same", [{ ...shared.version, id: "p_s" }], "2026-05-01T00:00:00.900Z");
    same.metadata.uid = "9a3c";
    for (const order of permutations([undated, created, same])) {
      const idx = new KeyIndex();
      for (const k of order) idx.apply("add", k);
      expect(owner(idx)).toBe("zzz/created"); // the same second as bbb/same, the lower uid
      idx.apply("delete", created);
      expect(owner(idx)).toBe("bbb/same");
      idx.apply("delete", same);
      expect(owner(idx)).toBe("aaa/undated");
    }
  });

  it("keeps a separate claim per hash: one ApiKey can own one hash and lose another", () => {
    const own = newKey("p_own");
    const idx = new KeyIndex();
    const both = claimant("other", "both", [{ ...shared.version, id: "p_b" }, own.version], "2026-04-01T00:00:00Z");
    idx.apply("add", both);
    idx.apply("add", victim);
    expect(owner(idx)).toBe("shop/victim");
    expect(idx.lookup(keyDigest(own.key))?.record.ref).toBe("other/both");
    expect(idx.size).toBe(2);
    idx.apply("delete", both);
    expect(owner(idx)).toBe("shop/victim");
    expect(idx.lookup(keyDigest(own.key))).toBeUndefined();
  });
});
