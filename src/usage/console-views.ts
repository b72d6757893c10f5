// The usage API's console views (docs/console.md): the key inventory, one key's
// versions and alerts, and the access review. Each joins the data plane's live
// ApiKeys (usage's watch, src/usage/view.ts) with the analytics store; the
// caller's scope (ADR 0044) arrives as the filter's namespaces and is applied to
// both sides.
import type { AlertRecord, AnalyticsQueries, KeyActivity, UsageFilter } from "../analytics/queries.ts";
import { selectorMatches } from "../analytics/selector.ts";
import type { ApiKey, ApiKeyPolicy } from "../api/types.ts";
import { computeReview, REVIEW_DEFAULTS, type LiveState, type Review } from "../analytics/review.ts";
import type { ApiRequest, InventorySort } from "./api-request.ts";

const DAY_MS = 86_400_000;

export type ConsoleQueries = Pick<AnalyticsQueries, "keyActivity" | "keyRecords" | "lastUses" | "topKeys" | "alertRecords" | "keyVersions" | "rulesUsed">;

/** What the console views read besides the store. */
export interface ConsoleSources {
  /** The data plane's ApiKeys; undefined while its watch has not synced (the store alone answers then). */
  live?: () => readonly ApiKey[] | undefined;
  /** Every ApiKeyPolicy (the review's rule scopes); rejects when they cannot be read. */
  policies?: () => Promise<readonly ApiKeyPolicy[]>;
  /** Per-request retention (ms): the review's scope window. */
  retentionMs: number;
}

/** A key's state: the ApiKey's status.state, `Deleted` for a key only the store remembers, `Unknown` while no live view is at hand. */
export type InventoryState = NonNullable<NonNullable<ApiKey["status"]>["state"]> | "Deleted" | "Unknown";

export interface InventoryItem {
  namespace: string;
  name: string;
  uid: string;
  /** The current key version's id. */
  keyId?: string;
  owner: string;
  labels: Record<string, string>;
  scopes: string[];
  state: InventoryState;
  createdAt?: number;
  expiresAt?: number;
  lastUsedAt?: number;
  /** Requests (any outcome) in the last 24 hours. */
  requests24h: number;
  /** Requests (any outcome) in the request's range. */
  requests: number;
  firingAlerts: string[];
}

export interface Inventory {
  total: number;
  items: InventoryItem[];
}

export interface KeyVersionItem {
  keyId: string;
  state: "active" | "grace" | "expired";
  createdAt?: number;
  /** A version in grace stops being accepted then. */
  graceUntil?: number;
  lastUsedAt?: number;
}

export interface KeyDetail extends Omit<InventoryItem, "requests" | "requests24h" | "firingAlerts"> {
  deletedAt?: number;
  rotation?: string;
  lastRotatedAt?: number;
  versions: KeyVersionItem[];
  alerts: AlertRecord[];
}

type KeyTerms = Pick<UsageFilter, "namespaces" | "owner" | "selector" | "key">;

const ms = (t: string | Date | undefined): number | undefined => {
  if (t === undefined) return undefined;
  const v = Date.parse(t instanceof Date ? t.toISOString() : t);
  return Number.isFinite(v) ? v : undefined;
};

/** Whether a live key passes the filter's key terms (a key id matches any of its versions). */
function liveMatches(k: ApiKey, f: KeyTerms): boolean {
  const { namespace, name } = k.metadata;
  if (f.namespaces && !f.namespaces.includes(namespace)) return false;
  if (f.owner !== undefined && k.spec.owner !== f.owner) return false;
  if (f.key !== undefined) {
    if (f.key.includes("/")) {
      if (f.key !== `${namespace}/${name}`) return false;
    } else if (!(k.status?.keys ?? []).some((v) => v.id === f.key)) return false;
  }
  return selectorMatches(f.selector, k.metadata.labels ?? {});
}

/** The live keys the filter selects, or undefined when there is no live view. */
export function liveKeys(sources: ConsoleSources, f: KeyTerms): ApiKey[] | undefined {
  return sources.live?.()?.filter((k) => liveMatches(k, f));
}

function fromLive(k: ApiKey, stored: KeyActivity | undefined): Omit<InventoryItem, "requests" | "requests24h" | "firingAlerts"> {
  const usedLive = ms(k.status?.usage?.lastUsedAt);
  const used = Math.max(usedLive ?? -1, stored?.lastUsedAt ?? -1);
  const createdAt = ms(k.metadata.creationTimestamp) ?? stored?.createdAt;
  const expiresAt = ms(k.spec.expiresAt);
  return {
    namespace: k.metadata.namespace,
    name: k.metadata.name,
    uid: k.metadata.uid ?? "",
    ...(k.status?.currentKeyId ? { keyId: k.status.currentKeyId } : {}),
    owner: k.spec.owner,
    labels: { ...(k.metadata.labels ?? {}) },
    scopes: [...(k.spec.scopes ?? [])],
    state: k.status?.state ?? "Pending",
    ...(createdAt !== undefined ? { createdAt } : {}),
    ...(expiresAt !== undefined ? { expiresAt } : {}),
    ...(used >= 0 ? { lastUsedAt: used } : {}),
  };
}

function fromStore(a: KeyActivity, haveLive: boolean): Omit<InventoryItem, "requests" | "requests24h" | "firingAlerts"> {
  return {
    namespace: a.namespace,
    name: a.name,
    uid: a.uid,
    owner: a.owner,
    labels: a.labels,
    scopes: a.scopes,
    // Not deleted on record but not live either: deleted since the store last heard, or outside the watched namespaces.
    state: a.deletedAt !== undefined || haveLive ? "Deleted" : "Unknown",
    createdAt: a.createdAt,
    ...(a.expiresAt !== undefined ? { expiresAt: a.expiresAt } : {}),
    ...(a.lastUsedAt !== undefined ? { lastUsedAt: a.lastUsedAt } : {}),
  };
}

const SORT_VALUE: Record<InventorySort, (i: InventoryItem) => string | number | undefined> = {
  name: (i) => `${i.namespace}/${i.name}`,
  owner: (i) => i.owner,
  state: (i) => i.state,
  expiresAt: (i) => i.expiresAt,
  lastUsedAt: (i) => i.lastUsedAt,
  requests24h: (i) => i.requests24h,
  requests: (i) => i.requests,
};

/** Sorts by `sort` in `order`; keys without the value last either way; ties by namespace/name. */
export function sortInventory(items: InventoryItem[], sort: InventorySort, order: "asc" | "desc"): InventoryItem[] {
  const value = SORT_VALUE[sort];
  const dir = order === "asc" ? 1 : -1;
  const byName = (a: InventoryItem, b: InventoryItem): number => (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0);
  return items.sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    if (va === undefined || vb === undefined) return va === vb ? byName(a, b) : va === undefined ? 1 : -1;
    const c = va < vb ? -1 : va > vb ? 1 : 0;
    return c !== 0 ? c * dir : byName(a, b);
  });
}

/** Every key the filter selects: the live ones from the data plane, the others (deleted) from the store. */
export async function inventory(q: ConsoleQueries, sources: ConsoleSources, f: UsageFilter, r: ApiRequest, now: number): Promise<Inventory> {
  const terms: KeyTerms = { ...(f.namespaces ? { namespaces: f.namespaces } : {}), ...(f.owner !== undefined ? { owner: f.owner } : {}), ...(f.selector !== undefined ? { selector: f.selector } : {}), ...(f.key !== undefined ? { key: f.key } : {}) };
  const [records, lastUses, day, ranged, firing] = await Promise.all([
    q.keyRecords(terms),
    q.lastUses(),
    q.topKeys({ ...terms, since: now - DAY_MS, until: now }, Number.MAX_SAFE_INTEGER),
    r.ranged ? q.topKeys(f, Number.MAX_SAFE_INTEGER) : undefined,
    q.alertRecords({ ...terms, since: now, until: now + 1 }, true),
  ]);
  const stored: KeyActivity[] = records.map((k) => {
    const used = lastUses.get(k.uid);
    return used === undefined ? k : { ...k, lastUsedAt: used };
  });
  const live = liveKeys(sources, terms);
  const storedByUid = new Map(stored.map((a) => [a.uid, a]));
  const base = live ? live.map((k) => fromLive(k, storedByUid.get(k.metadata.uid ?? ""))) : [];
  const liveUids = new Set(base.map((b) => b.uid));
  for (const a of stored) if (!liveUids.has(a.uid)) base.push(fromStore(a, live !== undefined));
  const perDay = new Map(day.map((k) => [k.uid, k.requests]));
  const perRange = ranged ? new Map(ranged.map((k) => [k.uid, k.requests])) : perDay;
  const alerts = new Map<string, string[]>();
  for (const a of firing) alerts.set(a.uid, [...(alerts.get(a.uid) ?? []), a.alert]);
  const items = base.map((b) => ({ ...b, requests24h: perDay.get(b.uid) ?? 0, requests: perRange.get(b.uid) ?? 0, firingAlerts: (alerts.get(b.uid) ?? []).sort() }));
  sortInventory(items, r.sort, r.order);
  return { total: items.length, items: items.slice(r.offset, r.offset + r.limit) };
}

/** One key: the live ApiKey of that name (or holding that key id), else the newest the store remembers; undefined when the filter selects none. */
export async function keyDetail(q: ConsoleQueries, sources: ConsoleSources, f: UsageFilter): Promise<KeyDetail | undefined> {
  const terms: KeyTerms = { ...(f.namespaces ? { namespaces: f.namespaces } : {}), ...(f.key !== undefined ? { key: f.key } : {}) };
  const [k] = liveKeys(sources, terms) ?? [];
  const stored = await q.keyActivity(terms);
  const record = k ? stored.find((a) => a.uid === k.metadata.uid) : stored.reduce<KeyActivity | undefined>((newest, a) => (newest === undefined || a.createdAt > newest.createdAt ? a : newest), undefined);
  if (!k && !record) return undefined;
  const uid = k?.metadata.uid ?? record?.uid ?? "";
  const [used, alerts] = await Promise.all([q.keyVersions(uid), q.alertRecords({ ...terms, since: 0, until: Number.MAX_SAFE_INTEGER }, false)]);
  const live = new Map((k?.status?.keys ?? []).map((v) => [v.id, v]));
  const lastUse = new Map(used.map((u) => [u.keyId, u.lastUsedAt]));
  const versions: KeyVersionItem[] = [];
  for (const u of used) {
    if (live.has(u.keyId)) continue;
    versions.push({ keyId: u.keyId, state: "expired", createdAt: u.firstSeenAt, ...(u.lastUsedAt !== undefined ? { lastUsedAt: u.lastUsedAt } : {}) });
  }
  for (const v of live.values()) {
    const createdAt = ms(v.createdAt);
    const graceUntil = v.state === "grace" ? ms(v.expiresAt) : undefined;
    const last = lastUse.get(v.id) ?? ms(k?.status?.usage?.keys?.find((x) => x.id === v.id)?.lastUsedAt);
    versions.push({ keyId: v.id, state: v.state, ...(createdAt !== undefined ? { createdAt } : {}), ...(graceUntil !== undefined ? { graceUntil } : {}), ...(last !== undefined ? { lastUsedAt: last } : {}) });
  }
  versions.sort((a, b) => (a.createdAt ?? 0) - (b.createdAt ?? 0) || a.keyId.localeCompare(b.keyId));
  const head = k ? fromLive(k, record) : fromStore(record as KeyActivity, sources.live?.() !== undefined);
  const lastRotatedAt = ms(k?.status?.lastRotationAt);
  return {
    ...head,
    ...(record?.deletedAt !== undefined && !k ? { deletedAt: record.deletedAt } : {}),
    ...(k ? { rotation: k.spec.rotation?.every ?? "none" } : {}),
    ...(lastRotatedAt !== undefined ? { lastRotatedAt } : {}),
    versions,
    alerts: alerts.filter((a) => a.uid === uid),
  };
}

/** The access review of the keys the filter selects: the live keys and every policy when both are at hand, the store's records otherwise. */
export async function reviewView(q: ConsoleQueries, sources: ConsoleSources, f: UsageFilter, now: number): Promise<Review> {
  const terms = { ...(f.namespaces ? { namespaces: f.namespaces } : {}), ...(f.owner !== undefined ? { owner: f.owner } : {}), ...(f.selector !== undefined ? { selector: f.selector } : {}) };
  const keys = liveKeys(sources, { ...(f.namespaces ? { namespaces: f.namespaces } : {}) });
  let live: LiveState;
  if (!keys) live = { unreachable: "the data plane's view of the ApiKeys is not ready" };
  else if (!sources.policies) live = { unreachable: "the ApiKeyPolicies are not read here" };
  else {
    try {
      live = { keys, policies: await sources.policies() };
    } catch {
      live = { unreachable: "the ApiKeyPolicies could not be read" };
    }
  }
  return computeReview(q, live, terms, { now, ...REVIEW_DEFAULTS, retentionMs: sources.retentionMs });
}
