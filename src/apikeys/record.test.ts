import { describe, expect, it } from "vitest";
import { apiKey, newKey } from "../api/fixtures.test-support.ts";
import type { ApiKey, KeyVersion } from "../api/types.ts";
import { unionOfViews } from "../k8s/views.ts";
import { apiKeyOf, recordForm, recordOf, ValuePool } from "./record.ts";
import { indexView, usageView } from "./views.ts";

/** What the shared watch delivers: the union of what the index and usage read. */
const delivered = unionOfViews(indexView, usageView);

/** An ApiKey as the apiserver sends it, every field the readers read set, and what other writers add. */
function listed(name = "acme", owner = "team-a"): { ak: ApiKey; key: string; graceKey: string } {
  const active = newKey(`kw_${name.toUpperCase().padEnd(8, "A").slice(0, 8)}`);
  active.version.createdAt = "2026-01-01T00:00:00.123Z";
  const grace = newKey("kw_BBBBBBBB", "grace", "2999-01-01T00:00:00Z");
  const ak = apiKey(
    "shop",
    name,
    {
      owner,
      scopes: ["orders:read", "orders:write"],
      expiresAt: "2999-01-01T00:00:00Z",
      allowedSources: ["10.0.0.0/8"],
      limits: { rate: { requests: 5, per: "1s" }, quota: { requests: 1000, per: "day" } },
      rotation: { every: "720h", gracePeriod: "1h" },
      keyHash: active.version.hash,
      description: "checkout",
    },
    [active.version, grace.version],
    { tier: "pro" },
  );
  ak.metadata.resourceVersion = "42";
  ak.metadata.generation = 3;
  ak.metadata.creationTimestamp = "2026-01-01T00:00:00Z" as unknown as Date;
  ak.metadata.annotations = { "kubectl.kubernetes.io/last-applied-configuration": "{}" };
  ak.metadata.managedFields = [{ manager: "kubectl", operation: "Update", time: "2026-01-02T00:00:00Z" as unknown as Date, fieldsType: "FieldsV1", fieldsV1: { "f:spec": {} } }];
  ak.status = {
    ...ak.status,
    currentKeyId: active.version.id,
    lastRotationAt: "2026-01-01T06:00:00Z",
    secretName: `${name}-apikey`,
    observedGeneration: 3,
    conditions: [{ type: "Ready", status: "True", reason: "Issued", message: "key issued", lastTransitionTime: "2026-01-01T00:00:00Z" }],
    usage: { requests24h: 7, lastUsedAt: "2026-01-02T00:00:00Z", keys: [{ id: active.version.id, lastUsedAt: "2026-01-02T00:00:00Z" }] },
  };
  return { ak: JSON.parse(JSON.stringify(ak)) as ApiKey, key: active.key, graceKey: grace.key };
}

describe("the ApiKey record", () => {
  it("holds every field the shared watch delivers but those read on delivery only, only by the key index, or by no reader", () => {
    const { ak } = listed();
    const view = delivered(ak);
    // Read on delivery only: revocation lag (newest write, deletion time).
    const { managedFields: _m, deletionTimestamp: _d, ...metadata } = view.metadata;
    // Passed along by indexView's whole spec, read by no reader; and what only the index reads.
    const { description: _s, prefix: _p, secretName: _n, allowedSources: _a, limits, keyHash: _h, ...spec } = view.spec;
    // Hashes are not held: "" where the ApiKey had one.
    const status = { ...view.status, keys: view.status?.keys?.map((v) => ({ ...v, hash: "" })) };
    // JSON drops the fields a view leaves undefined.
    expect(apiKeyOf(recordOf(view, new ValuePool()))).toEqual(JSON.parse(JSON.stringify({ ...view, metadata, spec: { ...spec, keyHash: "", limits: { quota: limits?.quota } }, status })));
  });

  it("holds nothing only the key index reads: no key version's hash, no source range, no rate limit", () => {
    const { ak } = listed();
    const r = recordOf(delivered(ak), new ValuePool());
    const text = JSON.stringify({ r, ak: apiKeyOf(r), versions: r.keys });
    for (const v of ak.status?.keys ?? []) {
      expect(v.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(text).not.toContain(v.hash.slice(7));
      expect(text).not.toContain(Buffer.from(v.hash.slice(7), "hex").toString("latin1"));
    }
    expect(text).not.toContain("10.0.0.0/8");
    expect(apiKeyOf(r).spec.limits).toEqual({ quota: { requests: 1000, per: "day" } });
  });

  it("holds whether spec.keyHash is set, not the hash: an ApiKey made from it has \"\" there", () => {
    const { ak } = listed();
    const r = recordOf(delivered(ak));
    expect(r.hashed).toBe(true);
    expect(JSON.stringify(r)).not.toContain(ak.spec.keyHash?.slice(7));
    expect(apiKeyOf(r).spec.keyHash).toBe("");
    delete ak.spec.keyHash;
    expect(recordOf(ak).hashed).toBe(false);
    expect(apiKeyOf(recordOf(ak)).spec.keyHash).toBeUndefined();
  });

  it("holds one key version without an array, and hands it out as one", () => {
    const { ak } = listed();
    ak.status!.keys = ak.status!.keys!.slice(0, 1);
    const r = recordOf(delivered(ak));
    expect(r.keys).toEqual([{ id: ak.status!.keys[0]!.id, state: "active", createdAt: ak.status!.keys[0]!.createdAt }]);
    expect(Object.isFrozen(r.keys)).toBe(true);
  });

  it("gives back its one key version as it was made from, however it keeps it", () => {
    const { ak } = listed();
    const one = (v: Partial<KeyVersion>, current = "kw_ONE"): ApiKey => {
      const copy = structuredClone(ak);
      copy.status = { ...copy.status, currentKeyId: current, keys: [{ id: "kw_ONE", hash: `sha256:${"a".repeat(64)}`, state: "active", ...v }] };
      return copy;
    };
    const cases: [Partial<KeyVersion>, string?][] = [
      [{ createdAt: "2026-01-01T00:00:00Z" }],
      [{ createdAt: "2020-01-01T00:00:00Z" }],
      [{ createdAt: "2019-12-31T23:59:59Z" }],
      [{ createdAt: "2060-01-01T00:00:00Z" }],
      [{ createdAt: "2026-01-01T00:00:00.250Z" }],
      [{ createdAt: "2026-01-01T00:00:00.000Z" }],
      [{ createdAt: "2026-01-01T01:00:00+01:00" }],
      [{ createdAt: "not a time" }],
      [{}],
      [{ createdAt: "2026-01-01T00:00:00Z", state: "grace", expiresAt: "2026-02-01T00:00:00Z" }],
      [{ createdAt: "2026-01-01T00:00:00Z", expiresAt: "2026-02-01T00:00:00Z" }],
      [{ createdAt: "2026-01-01T00:00:00Z" }, "kw_OTHER"],
    ];
    for (const [v, current] of cases) {
      const made = one(v, current);
      const want = made.status!.keys!.map(({ hash: _h, ...rest }) => rest);
      const r = recordOf(made, new ValuePool());
      expect(r.keys).toStrictEqual(want);
      expect(Object.isFrozen(r.keys) && Object.isFrozen(r.keys?.[0])).toBe(true);
      expect(r.currentKeyId).toBe(current ?? "kw_ONE");
      expect(apiKeyOf(r).status?.keys).toStrictEqual(want.map((x) => ({ ...x, hash: "" })));
    }
  });

  it("holds no object of its own for the one active version most ApiKeys have", () => {
    const pool = new ValuePool();
    const records = ["2026-01-01T00:00:00Z", "2026-03-04T05:06:07Z"].map((createdAt, i) => {
      const { ak } = listed(`k${i}`);
      delete ak.spec.expiresAt;
      ak.status = { ...ak.status, currentKeyId: `kw_K${i}`, keys: [{ id: `kw_K${i}`, hash: `sha256:${"a".repeat(64)}`, state: "active", createdAt }], lastRotationAt: undefined, usage: undefined };
      return recordOf(delivered(ak), pool);
    });
    // Every object a record holds (its pooled profile, the shared rare fields) is another's too.
    const [a, b] = records.map((r) => Object.values(r).filter((v): v is object => typeof v === "object" && v !== null));
    expect(a?.length).toBeGreaterThan(0);
    for (const v of a ?? []) expect(b).toContain(v);
    expect(records[1]?.keys).toEqual([{ id: "kw_K1", state: "active", createdAt: "2026-03-04T05:06:07Z" }]);
  });

  it("keeps its namespace/name as the one string it is given, and its name cut from it", () => {
    const { ak } = listed();
    const r = recordOf(delivered(ak), new ValuePool(), "shop/acme");
    expect(r.ref).toBe("shop/acme");
    expect([r.namespace, r.name]).toEqual(["shop", "acme"]);
    expect(recordOf(delivered(ak)).ref).toBe("shop/acme");
    expect(recordForm().keyOf?.(r)).toBe("shop/acme");
  });

  it("holds what usage reads, flat", () => {
    const { ak } = listed();
    const r = recordOf(delivered(ak));
    expect(r).toMatchObject({
      namespace: "shop",
      name: "acme",
      uid: ak.metadata.uid,
      resourceVersion: "42",
      owner: "team-a",
      currentKeyId: ak.status?.currentKeyId,
      usage: ak.status?.usage,
      quota: ak.spec.limits?.quota,
      disabled: undefined,
      state: "Active",
    });
    expect(r.keys?.map((v) => v.id)).toEqual(ak.status?.keys?.map((v) => v.id));
  });

  it("gives back every resourceVersion and creation time as it was made from, however it keeps them", () => {
    const { ak } = listed();
    for (const rv of ["42", "1", "999999999", "1000000000", "0", "0123", "12345678901234567890", "x-1", undefined]) {
      ak.metadata.resourceVersion = rv;
      expect(recordOf(ak).resourceVersion).toBe(rv);
      expect(recordForm().resourceVersion(recordOf(ak))).toBe(rv);
    }
    for (const t of ["2026-01-01T00:00:00Z", "2020-01-01T00:00:00Z", "2019-12-31T23:59:59Z", "2060-01-01T00:00:00Z", "1960-06-01T00:00:00Z", "2026-01-01T00:00:00.250Z"]) {
      ak.metadata.creationTimestamp = t as unknown as Date;
      expect(recordOf(ak).createdMs).toBe(Date.parse(t));
      expect(apiKeyOf(recordOf(ak)).metadata.creationTimestamp).toBe(t);
    }
  });

  it("keeps the creation time as a number, and gives it back as the apiserver wrote it", () => {
    const { ak } = listed();
    const r = recordOf(delivered(ak));
    expect(r.createdMs).toBe(Date.UTC(2026, 0, 1));
    expect(apiKeyOf(r).metadata.creationTimestamp).toBe("2026-01-01T00:00:00Z");
    ak.metadata.creationTimestamp = "2026-01-01T00:00:00.250Z" as unknown as Date;
    expect(apiKeyOf(recordOf(ak)).metadata.creationTimestamp).toBe("2026-01-01T00:00:00.250Z");
    ak.metadata.creationTimestamp = undefined;
    expect(apiKeyOf(recordOf(ak)).metadata.creationTimestamp).toBeUndefined();
  });

  it("does not change when only a field no reader reads does", () => {
    const { ak } = listed();
    const before = recordOf(delivered(ak));
    const changed = structuredClone(ak);
    changed.metadata.annotations = { other: "x" };
    changed.metadata.managedFields = [{ manager: "keyward-authz", operation: "Update", time: "2026-01-03T00:00:00Z" as unknown as Date }];
    changed.metadata.generation = 4;
    changed.spec.description = "another";
    changed.spec.secretName = "elsewhere";
    changed.status = { ...changed.status, conditions: [], observedGeneration: 4, secretName: "x", nextRotationAt: "2026-02-01T00:00:00Z" };
    // Nor when only what the index reads alone does: the sources, the rate limit, a version's hash.
    changed.spec.allowedSources = ["192.0.2.0/24"];
    changed.spec.limits = { ...changed.spec.limits, rate: { requests: 1, per: "1m" } };
    changed.status.keys = changed.status.keys?.map((v, i) => (i === 1 ? { ...v, hash: `sha256:${"0".repeat(64)}` } : v));
    expect(recordOf(delivered(changed))).toEqual(before);
    // Made of the whole object, too: the record itself leaves those fields out.
    expect(recordOf(changed)).toEqual(recordOf(ak));
    expect(recordOf(ak)).toEqual(before);
  });

  it("shares the values ApiKeys repeat through its pool", () => {
    const pool = new ValuePool();
    const a = recordOf(delivered(listed("a").ak), pool);
    const b = recordOf(delivered(listed("b").ak), pool);
    expect(b.labels).toBe(a.labels);
    expect(b.scopes).toBe(a.scopes);
    expect(b.quota).toBe(a.quota);
    expect(b.rotation).toBe(a.rotation);
    expect(b.owner).toBe(a.owner);
    // Without a pool (a record made of an ApiKey read once), nothing is shared.
    expect(recordOf(delivered(listed("c").ak)).labels).not.toBe(a.labels);
  });

  it("hands readers its own parts, frozen: a reader that changes one throws, and the record stays as it was", () => {
    const pool = new ValuePool();
    const r = recordOf(delivered(listed().ak), pool);
    const ak = apiKeyOf(r);
    expect(() => {
      ak.metadata.labels!.tier = "free";
    }).toThrow(TypeError);
    expect(() => ak.spec.scopes!.push("admin")).toThrow(TypeError);
    expect(() => {
      ak.spec.limits!.quota!.requests = 1;
    }).toThrow(TypeError);
    expect(() => {
      ak.status!.keys![0]!.state = "grace";
    }).toThrow(TypeError);
    expect(() => {
      (r as { owner: string }).owner = "mallory";
    }).toThrow(TypeError);
    expect(r.labels).toEqual({ tier: "pro" });
    expect(r.scopes).toEqual(["orders:read", "orders:write"]);
    expect(r.quota?.requests).toBe(1000);
    expect(r.owner).toBe("team-a");
  });

  it("bounds its pool: past 4,096 distinct values it starts over instead of growing", () => {
    const pool = new ValuePool();
    const first = { team: "x" };
    expect(pool.value(first)).toBe(first);
    expect(pool.value({ team: "x" })).toBe(first);
    for (let i = 0; i < 4096; i++) pool.value({ team: `t${i}` });
    const again = { team: "x" };
    expect(pool.value(again)).toBe(again);
  });

  it("keeps an ApiKey without status without one", () => {
    const { ak } = listed();
    delete ak.status;
    const r = recordOf(ak);
    expect(r.hasStatus).toBe(false);
    expect(apiKeyOf(r).status).toBeUndefined();
  });

  it("is what a watch's cache keeps, with the resourceVersion it was made from", () => {
    const form = recordForm();
    const r = form.keep(delivered(listed().ak), "shop/acme");
    expect(form.resourceVersion(r)).toBe("42");
    expect(form.expand(r).metadata.name).toBe("acme");
  });

  it("costs far less heap than the object it is made of", () => {
    // Checked loosely here; bench/views.ts measures it (bytes per key, ADR 0054).
    const pool = new ValuePool();
    const views = Array.from({ length: 50 }, (_, i) => delivered(listed(`k${i}`).ak));
    const records = views.map((v) => recordOf(v, pool));
    const size = (x: unknown): number => JSON.stringify(x).length;
    // Its own fields: what each key holds alone, the shared profile and the rarely set fields.
    expect(records.reduce((n, r) => n + Object.keys(r).length, 0) / records.length).toBeLessThanOrEqual(9);
    expect(size(records[0])).toBeLessThan(size(views[0]));
  });
});
