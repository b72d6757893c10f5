// The quarterly access review (`keyward review`, and the usage API's review
// view): which keys went unused for 30 and 90 days, which scopes a key holds
// and never used, which keys were never rotated or carry key material older
// than N days, which expire soon, and which have no owner label. Computed from the analytics store (usage)
// and, when the cluster answers, the live ApiKeys and ApiKeyPolicies; without
// the cluster, from the store's key records alone, which lack rotation and
// policies (the report says what it could not check).
import type { AnalyticsQueries, KeyActivity, RuleUse } from "./queries.ts";
import { selectorMatches } from "./selector.ts";
import type { ApiKey, ApiKeyPolicy } from "../api/types.ts";

const DAY = 86_400_000;

export interface ReviewOptions {
  now: number;
  /** Key material older than this many days is reported. */
  olderThanDays: number;
  /** Keys expiring within this many days (or already expired) are reported. */
  expiringWithinDays: number;
  /** The label that names a key's accountable owner; "" checks only spec.owner. */
  ownerLabel: string;
  /** Per-request retention (ms): the window scope use is known for. */
  retentionMs: number;
}

/** `keyward review`'s defaults, which the usage API's review view uses too. */
export const REVIEW_DEFAULTS = { olderThanDays: 90, expiringWithinDays: 30, ownerLabel: "owner" } as const;

/** What the cluster said, or why it could not be asked. */
export type LiveState = { keys: readonly ApiKey[]; policies: readonly ApiKeyPolicy[] } | { unreachable: string };

export interface ReviewKey {
  namespace: string;
  name: string;
  owner: string;
}

export interface UnusedKey extends ReviewKey {
  /** Last allowed request (RFC 3339), or undefined when none is on record. */
  lastUsedAt?: string;
  /** Whole days since the last use (or since creation, when never used). */
  idleDays: number;
}

export interface UnusedScopes extends ReviewKey {
  granted: string[];
  unused: string[];
  /** Rules the key was let through whose policy or rule no longer exists: their scopes are unknown. */
  unknownRules: string[];
}

export interface StaleKey extends ReviewKey {
  /** When the current key material was made (RFC 3339). */
  since: string;
  ageDays: number;
  /** When keyward last rotated it, if it ever did. */
  lastRotatedAt?: string;
  /** spec.rotation.every, or "none". */
  rotation: string;
  /** The key comes from keyHash or existingSecret: keyward cannot rotate it. */
  external: boolean;
}

export interface ExpiringKey extends ReviewKey {
  expiresAt: string;
  /** Days left (negative: expired that many days ago). */
  daysLeft: number;
}

export interface Review {
  generatedAt: string;
  /** "cluster": live ApiKeys joined with the store; "store": the store's key records only. */
  source: "cluster" | "store";
  /** Why the cluster was not used, when it was not. */
  clusterUnavailable?: string;
  /** What this review could not check. */
  notChecked: string[];
  options: { olderThanDays: number; expiringWithinDays: number; ownerLabel: string; scopeWindowDays: number };
  keys: number;
  unused90: UnusedKey[];
  unused30: UnusedKey[];
  unusedScopes: UnusedScopes[];
  neverRotated: StaleKey[];
  olderThan: StaleKey[];
  expiringSoon: ExpiringKey[];
  withoutOwner: (ReviewKey & { labels: Record<string, string> })[];
}

/** One key under review, from either source. */
interface Subject extends ReviewKey {
  uid: string;
  labels: Record<string, string>;
  scopes: string[];
  createdAt: number;
  expiresAt?: number;
  /** Undefined when the source does not know (store only). */
  material?: { since: number; lastRotatedAt?: number; rotation: string; external: boolean };
}

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
const byName = (a: ReviewKey, b: ReviewKey): number => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name);
const ms = (text: string | undefined): number | undefined => {
  const t = text === undefined ? NaN : Date.parse(text);
  return Number.isFinite(t) ? t : undefined;
};

function fromApiKey(k: ApiKey): Subject {
  const created = ms(k.metadata.creationTimestamp as unknown as string | undefined) ?? 0;
  const current = k.status?.keys?.find((v) => v.id === k.status?.currentKeyId) ?? k.status?.keys?.find((v) => v.state === "active");
  const lastRotatedAt = ms(k.status?.lastRotationAt);
  const expiresAt = ms(k.spec.expiresAt);
  return {
    uid: k.metadata.uid ?? "",
    namespace: k.metadata.namespace,
    name: k.metadata.name,
    owner: k.spec.owner,
    labels: k.metadata.labels ?? {},
    scopes: k.spec.scopes ?? [],
    createdAt: created,
    ...(expiresAt !== undefined ? { expiresAt } : {}),
    material: {
      since: lastRotatedAt ?? ms(current?.createdAt) ?? created,
      ...(lastRotatedAt !== undefined ? { lastRotatedAt } : {}),
      rotation: k.spec.rotation?.every ?? "none",
      external: k.spec.keyHash !== undefined || k.spec.existingSecret !== undefined,
    },
  };
}

function fromRecord(k: KeyActivity): Subject {
  return { uid: k.uid, namespace: k.namespace, name: k.name, owner: k.owner, labels: k.labels, scopes: k.scopes, createdAt: k.createdAt, ...(k.expiresAt !== undefined ? { expiresAt: k.expiresAt } : {}) };
}

/** The scopes each policy rule requires, by `namespace/policy` and rule name. */
function ruleScopes(policies: readonly ApiKeyPolicy[]): Map<string, readonly string[]> {
  const m = new Map<string, readonly string[]>();
  for (const p of policies) {
    for (const r of p.spec.rules) if (r.name !== undefined) m.set(`${p.metadata.namespace}/${p.metadata.name}#${r.name}`, r.scopes ?? []);
  }
  return m;
}

export function buildReview(activity: readonly KeyActivity[], rules: readonly RuleUse[], live: LiveState, options: ReviewOptions): Review {
  const used = new Map(activity.map((a) => [a.uid, a.lastUsedAt]));
  const online = "keys" in live;
  const subjects = (online ? live.keys.map(fromApiKey) : activity.filter((a) => a.deletedAt === undefined).map(fromRecord)).sort(byName);
  const id = (s: Subject): ReviewKey => ({ namespace: s.namespace, name: s.name, owner: s.owner });
  const days = (t: number): number => Math.floor((options.now - t) / DAY);

  const unused = (min: number, max: number): UnusedKey[] =>
    subjects.flatMap((s) => {
      const last = used.get(s.uid);
      const idle = days(last ?? s.createdAt);
      return idle >= min && idle < max ? [{ ...id(s), ...(last !== undefined ? { lastUsedAt: iso(last) } : {}), idleDays: idle }] : [];
    });

  const unusedScopes: UnusedScopes[] = [];
  if (online) {
    const required = ruleScopes(live.policies);
    const byUid = new Map<string, RuleUse[]>();
    for (const r of rules) byUid.set(r.uid, [...(byUid.get(r.uid) ?? []), r]);
    for (const s of subjects) {
      if (!s.scopes.length) continue;
      const exercised = new Set<string>();
      const unknownRules: string[] = [];
      for (const r of byUid.get(s.uid) ?? []) {
        const need = required.get(`${r.policy}#${r.rule}`);
        if (need === undefined) unknownRules.push(`${r.policy}#${r.rule}`);
        else for (const sc of need) exercised.add(sc);
      }
      const unusedHere = s.scopes.filter((sc) => !exercised.has(sc));
      if (unusedHere.length) unusedScopes.push({ ...id(s), granted: [...s.scopes], unused: unusedHere, unknownRules });
    }
  }

  const stale = subjects.flatMap((s): StaleKey[] =>
    s.material ? [{ ...id(s), since: iso(s.material.since), ageDays: days(s.material.since), ...(s.material.lastRotatedAt !== undefined ? { lastRotatedAt: iso(s.material.lastRotatedAt) } : {}), rotation: s.material.rotation, external: s.material.external }] : [],
  );
  const olderThan = online
    ? stale.filter((k) => k.ageDays >= options.olderThanDays)
    : subjects.filter((s) => days(s.createdAt) >= options.olderThanDays).map((s) => ({ ...id(s), since: iso(s.createdAt), ageDays: days(s.createdAt), rotation: "unknown", external: false }));

  const notChecked: string[] = [];
  if (!online) {
    notChecked.push("scopes granted but never used (the rules' required scopes are in the cluster's ApiKeyPolicies)");
    notChecked.push("keys never rotated (rotation is in the ApiKeys' status); key age is the ApiKey's age instead");
  }

  return {
    generatedAt: iso(options.now),
    source: online ? "cluster" : "store",
    ...(online ? {} : { clusterUnavailable: live.unreachable }),
    notChecked,
    options: { olderThanDays: options.olderThanDays, expiringWithinDays: options.expiringWithinDays, ownerLabel: options.ownerLabel, scopeWindowDays: Math.round(options.retentionMs / DAY) },
    keys: subjects.length,
    unused90: unused(90, Infinity),
    unused30: unused(30, 90),
    unusedScopes,
    neverRotated: stale.filter((k) => k.lastRotatedAt === undefined),
    olderThan,
    expiringSoon: subjects.flatMap((s) => (s.expiresAt !== undefined && s.expiresAt <= options.now + options.expiringWithinDays * DAY ? [{ ...id(s), expiresAt: iso(s.expiresAt), daysLeft: Math.floor((s.expiresAt - options.now) / DAY) }] : [])),
    withoutOwner: subjects.filter((s) => s.owner.trim() === "" || (options.ownerLabel !== "" && !(s.labels[options.ownerLabel] ?? "").trim())).map((s) => ({ ...id(s), labels: s.labels })),
  };
}

/** The keys a review covers: by namespace (an allow-list), owner and label selector. */
export interface ReviewFilter {
  namespaces?: readonly string[];
  owner?: string;
  selector?: string;
}

/**
 * The review of the keys `filter` selects, from the store and `live` (the cluster's ApiKeys of
 * the filter's namespaces, or why they could not be read): what `keyward review` prints and the
 * usage API's review view answers.
 */
export async function computeReview(queries: Pick<AnalyticsQueries, "keyActivity" | "rulesUsed">, live: LiveState, filter: ReviewFilter, options: ReviewOptions): Promise<Review> {
  const activity = await queries.keyActivity(filter);
  const rules = await queries.rulesUsed({ ...filter, since: options.now - options.retentionMs, until: options.now + 1 });
  let scoped = live;
  if ("keys" in live) {
    // The store's filter, applied to the live keys as well; a live key the store has not seen yet is matched directly.
    const selected = new Set(activity.map((a) => a.uid));
    const filtered = filter.owner !== undefined || filter.selector !== undefined;
    scoped = {
      ...live,
      keys: live.keys.filter(
        (k) =>
          (filter.namespaces === undefined || filter.namespaces.includes(k.metadata.namespace)) &&
          (filter.owner === undefined || k.spec.owner === filter.owner) &&
          (!filtered || selected.has(k.metadata.uid ?? "") || selectorMatches(filter.selector, k.metadata.labels ?? {})),
      ),
    };
  }
  return buildReview(activity, rules, scoped, options);
}
