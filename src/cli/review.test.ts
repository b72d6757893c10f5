import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeyRecord, RequestRow } from "../analytics/row.ts";
import { openAnalyticsStore, type AnalyticsStore } from "../analytics/store.ts";
import type { ApiKey, ApiKeyPolicy, ApiKeySpec } from "../api/types.ts";
import { createLogger } from "../log.ts";
import { buildReview, type LiveState, type Review } from "../analytics/review.ts";
import { reviewJson, reviewMarkdown } from "./review-report.ts";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 8, 30, 12);
const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

// Keys, by what the review should find in each.
const KEYS: { name: string; created: number; scopes: string[]; spec?: Partial<ApiKeySpec>; labels?: Record<string, string>; lastRotation?: number; lastUse?: number; rules?: string[] }[] = [
  // Used today through a rule that requires orders:read; holds orders:write too, never used.
  { name: "busy", created: NOW - 400 * DAY, scopes: ["orders:read", "orders:write"], labels: { owner: "team-a" }, lastRotation: NOW - 10 * DAY, lastUse: NOW - 1000, rules: ["read"], spec: { rotation: { every: "720h" } } },
  // Last used 45 days ago: unused for 30 days.
  { name: "quiet", created: NOW - 200 * DAY, scopes: [], labels: { owner: "team-b" }, lastUse: NOW - 45 * DAY },
  // Last used 120 days ago: unused for 90 days; never rotated and older than 90 days.
  { name: "dormant", created: NOW - 300 * DAY, scopes: ["orders:read"], labels: { owner: "team-b" }, lastUse: NOW - 120 * DAY },
  // Never used, created 100 days ago: unused for 90 days; no owner label; expires in 5 days.
  { name: "never", created: NOW - 100 * DAY, scopes: [], spec: { expiresAt: iso(NOW + 5 * DAY) } },
  // New, unused: nothing to report but the missing rotation; a declared hash keyward cannot rotate; expired 2 days ago.
  { name: "fresh", created: NOW - 3 * DAY, scopes: ["reports:read"], labels: { owner: "" }, spec: { keyHash: `sha256:${"0".repeat(64)}`, expiresAt: iso(NOW - 2 * DAY) }, rules: ["gone"] },
];

const uid = (name: string): string => `uid-${name}`;
const apiKeys: ApiKey[] = KEYS.map((k) => ({
  apiVersion: "keyward.dev/v1alpha1",
  kind: "ApiKey",
  metadata: { name: k.name, namespace: "shop", uid: uid(k.name), labels: k.labels ?? {}, creationTimestamp: iso(k.created) as unknown as Date },
  spec: { owner: "acme", scopes: k.scopes, ...k.spec },
  status: { currentKeyId: `kw_${k.name}`, keys: [{ id: `kw_${k.name}`, hash: "sha256:x", state: "active", createdAt: iso(k.lastRotation ?? k.created) }], ...(k.lastRotation ? { lastRotationAt: iso(k.lastRotation) } : {}) },
}));
const policies: ApiKeyPolicy[] = [
  { apiVersion: "keyward.dev/v1alpha1", kind: "ApiKeyPolicy", metadata: { name: "api", namespace: "shop" }, spec: { hosts: ["shop.example.com"], rules: [{ name: "read", paths: ["/orders/*"], methods: ["GET"], scopes: ["orders:read"] }, { name: "write", paths: ["/orders"], methods: ["POST"], scopes: ["orders:write"] }] } },
];
const records: KeyRecord[] = [
  ...KEYS.map((k): KeyRecord => ({ uid: uid(k.name), namespace: "shop", name: k.name, owner: "acme", labels: k.labels ?? {}, scopes: k.scopes, createdAt: k.created, ...(k.spec?.expiresAt ? { expiresAt: Date.parse(k.spec.expiresAt) } : {}) })),
  // Deleted: kept in the store, never reviewed.
  { uid: "uid-deleted", namespace: "shop", name: "deleted", owner: "acme", labels: {}, scopes: [], createdAt: NOW - 500 * DAY, deletedAt: NOW - 200 * DAY },
];
const rows: RequestRow[] = KEYS.flatMap((k) => {
  if (k.lastUse === undefined && !k.rules) return [];
  const at = k.lastUse ?? NOW - DAY;
  const rules = k.rules ?? [];
  return [
    { at, uid: uid(k.name), keyId: `kw_${k.name}`, front: "http", outcome: "allowed", reason: "allowed", status: 200, checkMicros: 10, ...(rules[0] ? { policy: "shop/api", rule: rules[0] } : {}) },
    // A refused request is no use: the write rule was asked for and denied.
    { at, uid: uid(k.name), keyId: `kw_${k.name}`, front: "http", outcome: "forbidden", reason: "scope_missing", status: 403, checkMicros: 10, policy: "shop/api", rule: "write" },
  ];
});

const names = (ks: readonly { name: string }[]): string[] => ks.map((k) => k.name);

describe("keyward review", () => {
  let store: AnalyticsStore;
  const review = async (live: LiveState, ownerLabel = "owner"): Promise<Review> =>
    buildReview(await store.queries.keyActivity({}), await store.queries.rulesUsed({ since: NOW - 30 * DAY, until: NOW + 1 }), live, { now: NOW, olderThanDays: 90, expiringWithinDays: 30, ownerLabel, retentionMs: 30 * DAY });

  beforeAll(async () => {
    store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 400 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW }, createLogger({ sink: () => {} }));
    await store.upsertKeys(records);
    await store.writeRequests(rows);
  });
  afterAll(async () => {
    await store.close();
  });

  it("keys unused for 90 days and for 30 to 89 days, from their last allowed request", async () => {
    const r = await review({ keys: apiKeys, policies });
    expect(r.unused90).toEqual([
      { namespace: "shop", name: "dormant", owner: "acme", lastUsedAt: iso(NOW - 120 * DAY), idleDays: 120 },
      { namespace: "shop", name: "never", owner: "acme", idleDays: 100 },
    ]);
    expect(r.unused30).toEqual([{ namespace: "shop", name: "quiet", owner: "acme", lastUsedAt: iso(NOW - 45 * DAY), idleDays: 45 }]);
  });

  it("scopes granted but never used: the required scopes of the rules a key was allowed through", async () => {
    const r = await review({ keys: apiKeys, policies });
    expect(r.unusedScopes).toEqual([
      { namespace: "shop", name: "busy", owner: "acme", granted: ["orders:read", "orders:write"], unused: ["orders:write"], unknownRules: [] },
      // Its last use is older than the per-request window: nothing is known used.
      { namespace: "shop", name: "dormant", owner: "acme", granted: ["orders:read"], unused: ["orders:read"], unknownRules: [] },
      { namespace: "shop", name: "fresh", owner: "acme", granted: ["reports:read"], unused: ["reports:read"], unknownRules: ["shop/api#gone"] },
    ]);
  });

  it("keys never rotated, and key material older than --older-than", async () => {
    const r = await review({ keys: apiKeys, policies });
    expect(names(r.neverRotated)).toEqual(["dormant", "fresh", "never", "quiet"]);
    expect(r.neverRotated.find((k) => k.name === "fresh")).toMatchObject({ external: true, ageDays: 3 });
    expect(r.olderThan).toEqual([
      { namespace: "shop", name: "dormant", owner: "acme", since: iso(NOW - 300 * DAY), ageDays: 300, rotation: "none", external: false },
      { namespace: "shop", name: "never", owner: "acme", since: iso(NOW - 100 * DAY), ageDays: 100, rotation: "none", external: false },
      { namespace: "shop", name: "quiet", owner: "acme", since: iso(NOW - 200 * DAY), ageDays: 200, rotation: "none", external: false },
    ]);
  });

  it("keys expiring within --expiring-within, and expired ones", async () => {
    const r = await review({ keys: apiKeys, policies });
    expect(r.expiringSoon).toEqual([
      { namespace: "shop", name: "fresh", owner: "acme", expiresAt: iso(NOW - 2 * DAY), daysLeft: -2 },
      { namespace: "shop", name: "never", owner: "acme", expiresAt: iso(NOW + 5 * DAY), daysLeft: 5 },
    ]);
  });

  it("keys without an owner label (empty counts as none); the label is configurable", async () => {
    expect(names((await review({ keys: apiKeys, policies })).withoutOwner)).toEqual(["fresh", "never"]);
    expect(names((await review({ keys: apiKeys, policies }, "team")).withoutOwner)).toEqual(["busy", "dormant", "fresh", "never", "quiet"]);
    expect((await review({ keys: apiKeys, policies }, "")).withoutOwner).toEqual([]);
  });

  it("without the cluster: the store's records, deleted keys left out, and says what it could not check", async () => {
    const r = await review({ unreachable: "connect ECONNREFUSED 127.0.0.1:6443" });
    expect(r.source).toBe("store");
    expect(r.keys).toBe(5);
    expect(names(r.unused90)).toEqual(["dormant", "never"]);
    expect(names(r.unused30)).toEqual(["quiet"]);
    expect(r.unusedScopes).toEqual([]);
    expect(r.neverRotated).toEqual([]);
    expect(names(r.olderThan)).toEqual(["busy", "dormant", "never", "quiet"]);
    expect(names(r.expiringSoon)).toEqual(["fresh", "never"]);
    expect(r.notChecked).toHaveLength(2);
    const md = reviewMarkdown(r);
    expect(md).toContain("**The cluster could not be read (connect ECONNREFUSED 127.0.0.1:6443): this review uses the analytics store's key records only.**");
    expect(md).toMatch(/## Scopes granted but never used\n\n.*\n\nNot checked: needs the cluster\./);
  });

  it("renders markdown tables and JSON", async () => {
    const r = await review({ keys: apiKeys, policies });
    const md = reviewMarkdown(r);
    expect(md).toContain("5 ApiKeys from the cluster, joined with the analytics store.");
    expect(md).toContain("## Unused for 90 days or more\n\n| Key | Owner | Last used | Idle days |\n| --- | --- | --- | --- |\n| shop/dormant | acme |");
    expect(md).toContain("| shop/never | acme | never | 100 |");
    expect(md).toContain("| shop/busy | acme | orders:read, orders:write | orders:write |  |");
    expect(md).toContain("| shop/fresh | acme | " + iso(NOW - 3 * DAY) + " | 3 | never | external (keyHash or existingSecret) |");
    expect(JSON.parse(reviewJson(r))).toEqual(JSON.parse(JSON.stringify(r)));
  });
});
