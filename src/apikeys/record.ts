// The compact record the shared ApiKey cache of usage and the data plane keeps of each ApiKey
// (ADR 0054, ADR 0060), as client-go's TransformFunc would leave it: what the readers of the
// cache read, and nothing else. What many ApiKeys repeat (namespace, owner, labels, scopes,
// quota, rotation, states) is one pooled profile the records share; the fields most ApiKeys
// leave unset share one empty object. The whole object, nested as the apiserver sends it, costs
// several times as much per key.
//
// Readers of the cache: usage's flusher (usage, key version ids, quota period,
// resourceVersion), alerts (quotas, current key id), recorder (uid, owner), revocation-lag
// figure (the key version ids accepted before a change) and the console's live view (through
// apiKeyOf). The key index reads none of it: it joins the watch before the list and reads each
// change as delivered (src/authz/shared-index.ts), so the record holds no key hash, source
// range or rate limit.
//
// Per key, a record holds its namespace/name (the very string the cache is keyed by and the key
// index holds, ADR 0068), uid, resourceVersion, creation time, current key id, key versions
// (without hashes; the usual one, current and active, as an integer; another one alone without
// an array) and usage; everything else is behind the pooled profile or the shared empty Rare.
import { API_VERSION, type ApiKey, type ApiKeySpec, type ApiKeyState, type ApiKeyStatus, type KeyVersion, type Quota, type UsageStatus } from "../api/types.ts";
import { timestampMs } from "../api/timestamps.ts";
import type { CacheForm } from "../k8s/informer.ts";

/** A key version as the record keeps it: without its hash, which only the key index reads. */
export type RecordedVersion = Readonly<Omit<KeyVersion, "hash">>;

export interface ApiKeyRecord {
  /** `namespace/name`: the one string the cache keys the record by, and the key index its entries (name is cut from it when read). */
  readonly ref: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string | undefined;
  readonly resourceVersion: string | undefined;
  readonly labels: Readonly<Record<string, string>> | undefined;
  /**
   * metadata.creationTimestamp in ms since the epoch: a number takes 16 bytes where the
   * string took about 40, and apiKeyOf writes it back as the apiserver sends it (whole seconds).
   */
  readonly createdMs: number | undefined;
  readonly owner: string;
  readonly scopes: readonly string[] | undefined;
  readonly expiresAt: string | undefined;
  readonly disabled: boolean | undefined;
  /** spec.limits.quota: the flusher's period and the alerts' quota. The rate limit is the index's alone. */
  readonly quota: Readonly<Quota> | undefined;
  readonly rotation: Readonly<NonNullable<ApiKeySpec["rotation"]>> | undefined;
  /**
   * Whether spec.keyHash is set: the console tells keys issued elsewhere by it. The hash itself
   * is not held (the operator reads it, from its own cache).
   */
  readonly hashed: boolean;
  readonly existingSecret: Readonly<NonNullable<ApiKeySpec["existingSecret"]>> | undefined;
  /** Whether the ApiKey had a status at all (a new one has none). */
  readonly hasStatus: boolean;
  readonly state: ApiKeyState | undefined;
  readonly currentKeyId: string | undefined;
  readonly lastRotationAt: string | undefined;
  readonly keys: readonly RecordedVersion[] | undefined;
  /** status.usage: the flusher's base (ApiKeys that were never used have none). */
  readonly usage: UsageStatus | undefined;
}

/** Entries a pool holds at most; past that it starts over, so values of deleted ApiKeys cannot pile up. */
const POOL_MAX = 4096;

/** `v`, and every object and array in it, frozen. */
function deepFreeze<V>(v: V): V {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/**
 * Hands out one copy of each repeated value: strings by content, and small objects and
 * arrays (labels, scopes, limits) by their JSON, frozen, as records share them. Bounded: past
 * POOL_MAX entries it starts over, which only costs sharing, never correctness.
 */
export class ValuePool {
  private strings = new Map<string, string>();
  private values = new Map<string, unknown>();

  string<S extends string | undefined>(s: S): S {
    if (s === undefined) return s;
    const have = this.strings.get(s);
    if (have !== undefined) return have as S;
    if (this.strings.size >= POOL_MAX) this.strings = new Map();
    this.strings.set(s, s);
    return s;
  }

  value<V>(v: V | undefined): V | undefined {
    if (v === undefined) return undefined;
    const content = JSON.stringify(v);
    const have = this.values.get(content);
    if (have !== undefined) return have as V;
    if (this.values.size >= POOL_MAX) this.values = new Map();
    this.values.set(content, deepFreeze(v));
    return v;
  }
}

/** `ms` as RFC 3339 in UTC, as Kubernetes writes its timestamps: whole seconds without a fraction. */
function rfc3339(ms: number): string {
  const iso = new Date(ms).toISOString();
  return ms % 1000 === 0 ? `${iso.slice(0, 19)}Z` : iso;
}

/** What many ApiKeys share: pooled by content, frozen. */
interface Profile {
  readonly namespace: string;
  readonly owner: string;
  readonly labels: Readonly<Record<string, string>> | undefined;
  readonly scopes: readonly string[] | undefined;
  readonly quota: Readonly<Quota> | undefined;
  readonly rotation: Readonly<NonNullable<ApiKeySpec["rotation"]>> | undefined;
  readonly disabled: boolean | undefined;
  /** Whether spec.keyHash is set (the hash itself only the operator reads). */
  readonly hashed: boolean;
  readonly hasStatus: boolean;
  readonly state: ApiKeyState | undefined;
}

/** The fields most ApiKeys leave unset; every record without any of them shares NOTHING_RARE. */
interface Rare {
  readonly expiresAt: string | undefined;
  readonly existingSecret: Readonly<NonNullable<ApiKeySpec["existingSecret"]>> | undefined;
  readonly lastRotationAt: string | undefined;
}

const NOTHING_RARE: Rare = Object.freeze({ expiresAt: undefined, existingSecret: undefined, lastRotationAt: undefined });

/**
 * V8 holds integers below 2^30 in the object itself (a Smi); a string or any other number takes
 * 16–32 bytes of heap of its own. A resourceVersion of up to nine digits without a leading zero,
 * and a creation time in whole seconds since 2020 (until 2054), fit.
 */
const SMALL = 2 ** 30;
const SMALL_DIGITS = /^[1-9]\d{0,8}$/;
const SINCE_S = Date.UTC(2020, 0, 1) / 1000;

/** One record: the per-key fields, the pooled profile and the rare fields behind getters. Frozen. */
class Record_ implements ApiKeyRecord {
  readonly ref: string;
  readonly uid: string | undefined;
  readonly currentKeyId: string | undefined;
  readonly usage: UsageStatus | undefined;
  /** metadata.resourceVersion: a small integer (no heap of its own) when it is one's digits, else the string. */
  private readonly rv: number | string | undefined;
  /** The creation time: whole seconds since SINCE_S when that is a small integer, else ms since the epoch, boxed. */
  private readonly created: number | { readonly ms: number } | undefined;
  /**
   * status.keys. Most ApiKeys have one version, the current one, active, created in whole
   * seconds: that one is its creation time as a small integer (ACTIVE_ONLY), its id the
   * current key id. Another single version is held alone, several as an array.
   */
  private readonly versions: number | RecordedVersion | readonly RecordedVersion[] | undefined;
  private readonly profile: Profile;
  private readonly rare: Rare;

  constructor(ref: string, uid: string | undefined, resourceVersion: string | undefined, createdMs: number | undefined, currentKeyId: string | undefined, keys: readonly RecordedVersion[] | undefined, usage: UsageStatus | undefined, profile: Profile, rare: Rare) {
    this.ref = ref;
    this.uid = uid;
    this.rv = resourceVersion !== undefined && SMALL_DIGITS.test(resourceVersion) ? Number(resourceVersion) : resourceVersion;
    const since = createdMs === undefined ? undefined : createdMs / 1000 - SINCE_S;
    this.created = since === undefined ? undefined : Number.isInteger(since) && since >= 0 && since < SMALL ? since : Object.freeze({ ms: createdMs as number });
    this.currentKeyId = currentKeyId;
    const one = keys?.length === 1 ? keys[0] : undefined;
    this.versions = one ? (activeOnly(one, currentKeyId) ?? one) : keys;
    this.usage = usage;
    this.profile = profile;
    this.rare = rare;
    Object.freeze(this);
  }

  get resourceVersion(): string | undefined {
    return typeof this.rv === "number" ? String(this.rv) : this.rv;
  }
  get createdMs(): number | undefined {
    const c = this.created;
    return c === undefined ? undefined : typeof c === "number" ? (c + SINCE_S) * 1000 : c.ms;
  }
  /** status.keys, frozen (an array made afresh for a key with one version). */
  get keys(): readonly RecordedVersion[] | undefined {
    const v = this.versions;
    if (typeof v === "number") return Object.freeze([Object.freeze({ id: this.currentKeyId as string, state: "active" as const, createdAt: rfc3339((v + SINCE_S) * 1000) })]);
    return v === undefined || isVersionList(v) ? v : Object.freeze([v]);
  }
  get namespace(): string {
    return this.profile.namespace;
  }
  get name(): string {
    return this.ref.slice(this.profile.namespace.length + 1);
  }
  get owner(): string {
    return this.profile.owner;
  }
  get labels(): Readonly<Record<string, string>> | undefined {
    return this.profile.labels;
  }
  get scopes(): readonly string[] | undefined {
    return this.profile.scopes;
  }
  get quota(): Readonly<Quota> | undefined {
    return this.profile.quota;
  }
  get rotation(): Readonly<NonNullable<ApiKeySpec["rotation"]>> | undefined {
    return this.profile.rotation;
  }
  get disabled(): boolean | undefined {
    return this.profile.disabled;
  }
  get hasStatus(): boolean {
    return this.profile.hasStatus;
  }
  get state(): ApiKeyState | undefined {
    return this.profile.state;
  }
  get expiresAt(): string | undefined {
    return this.rare.expiresAt;
  }
  get hashed(): boolean {
    return this.profile.hashed;
  }
  get existingSecret(): Readonly<NonNullable<ApiKeySpec["existingSecret"]>> | undefined {
    return this.rare.existingSecret;
  }
  get lastRotationAt(): string | undefined {
    return this.rare.lastRotationAt;
  }
}

const isVersionList = (v: RecordedVersion | readonly RecordedVersion[]): v is readonly RecordedVersion[] => Array.isArray(v);

/**
 * The one version of an ApiKey as a small integer, when it can be and gives it back unchanged:
 * the current key, active, without an end, created in whole seconds since SINCE_S written as
 * the operator writes them. Its object and creation time string took about 120 bytes a key.
 */
function activeOnly(v: RecordedVersion, currentKeyId: string | undefined): number | undefined {
  if (v.id !== currentKeyId || v.state !== "active" || v.expiresAt !== undefined || v.createdAt === undefined) return undefined;
  const ms = Date.parse(v.createdAt);
  const since = ms / 1000 - SINCE_S;
  return Number.isInteger(since) && since >= 0 && since < SMALL && rfc3339(ms) === v.createdAt ? since : undefined;
}

/**
 * A key version without its hash, its repeated strings shared; frozen. Made with all its fields
 * at once: one added after an object literal is made goes to a properties array of its own.
 */
function recordedVersion(v: KeyVersion, pool: ValuePool | undefined): RecordedVersion {
  const id = v.id;
  const state = pool ? pool.string(v.state) : v.state;
  const createdAt = v.createdAt === undefined ? undefined : pool ? pool.string(v.createdAt) : v.createdAt;
  const out: RecordedVersion =
    v.expiresAt !== undefined
      ? createdAt === undefined
        ? { id, state, expiresAt: v.expiresAt }
        : { id, state, createdAt, expiresAt: v.expiresAt }
      : createdAt === undefined
        ? { id, state }
        : { id, state, createdAt };
  return Object.freeze(out);
}

/**
 * The record of `ak`: what the cache's readers read, nothing else, frozen with what it holds
 * (readers share it). With `pool`, the profile and repeated strings are shared with other
 * records; a string a record holds twice (the current key id, a version's) is held once. `ref`
 * is its `namespace/name` as the cache that keeps it holds it (made afresh when not given).
 */
export function recordOf(ak: ApiKey, pool?: ValuePool, ref?: string): ApiKeyRecord {
  const m = ak.metadata;
  const s = ak.spec;
  const st = ak.status;
  const keys = st?.keys && Object.freeze(st.keys.map((v) => recordedVersion(v, pool)));
  const currentKeyId = st?.currentKeyId === undefined ? undefined : (keys?.find((v) => v.id === st.currentKeyId)?.id ?? st.currentKeyId);
  const profile: Profile = {
    namespace: m.namespace,
    owner: s.owner,
    labels: m.labels,
    scopes: s.scopes,
    quota: s.limits?.quota,
    rotation: s.rotation,
    disabled: s.disabled,
    hashed: s.keyHash !== undefined,
    hasStatus: st !== undefined,
    state: st?.state,
  };
  const rare: Rare =
    s.expiresAt === undefined && s.existingSecret === undefined && st?.lastRotationAt === undefined
      ? NOTHING_RARE
      : Object.freeze({ expiresAt: s.expiresAt, existingSecret: deepFreeze(s.existingSecret), lastRotationAt: st?.lastRotationAt });
  return new Record_(ref ?? [m.namespace, m.name].join("/"), m.uid, m.resourceVersion, timestampMs(m.creationTimestamp), currentKeyId, keys, st?.usage && deepFreeze(st.usage), pool ? (pool.value(profile) as Profile) : deepFreeze(profile), rare);
}

/**
 * An ApiKey holding what the record holds: what the console's live view reads, and the object of
 * a delete a relist finds. Its parts are the record's own, frozen (the types say otherwise: an
 * ApiKey's are not read-only); a reader that changed one would throw. Fields the record does not
 * hold are undefined, and where the ApiKey had a hash (its key versions', spec.keyHash) it has ""
 * (the key index never reads an ApiKey made from a record). One shape for every ApiKey it makes.
 */
export function apiKeyOf(r: ApiKeyRecord): ApiKey {
  const spec: ApiKeySpec = {
    owner: r.owner,
    scopes: r.scopes as string[] | undefined,
    expiresAt: r.expiresAt,
    disabled: r.disabled,
    limits: r.quota && { quota: r.quota },
    rotation: r.rotation,
    keyHash: r.hashed ? "" : undefined,
    existingSecret: r.existingSecret,
  };
  const status: ApiKeyStatus | undefined = r.hasStatus
    ? { state: r.state, currentKeyId: r.currentKeyId, lastRotationAt: r.lastRotationAt, keys: r.keys && (Object.freeze(r.keys.map((v) => Object.freeze({ ...v, hash: "" }))) as KeyVersion[]), usage: r.usage }
    : undefined;
  return {
    apiVersion: API_VERSION,
    kind: "ApiKey",
    metadata: {
      name: r.name,
      namespace: r.namespace,
      uid: r.uid,
      resourceVersion: r.resourceVersion,
      labels: r.labels,
      creationTimestamp: r.createdMs === undefined ? undefined : (rfc3339(r.createdMs) as unknown as Date),
    },
    spec,
    status,
  };
}

/** The form of a cache of ApiKeys that keeps records (src/k8s/informer.ts), sharing values through one pool. */
export function recordForm(pool = new ValuePool()): CacheForm<ApiKey, ApiKeyRecord> {
  return { keep: (ak, key) => recordOf(ak, pool, key), resourceVersion: (r) => r.resourceVersion, expand: apiKeyOf, keyOf: (r) => r.ref };
}
