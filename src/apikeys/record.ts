// The compact record the ApiKey caches of usage and the data plane keep of each ApiKey
// (ADR 0054), as client-go's TransformFunc would leave it: one flat object of the fields
// their readers read, with the strings and values many ApiKeys repeat (namespace, owner,
// states, labels, scopes, limits, rotation) shared, and nothing else. The whole object,
// nested as the apiserver sends it, costs several times as much per key.
//
// Readers: the key index, when it joins a watch that has already listed (apiKeyOf gives
// it what it reads); usage's flusher (usage, key versions, quota period,
// resourceVersion), alerts (quotas, current key id), recorder (uid, owner) and
// revocation-lag figure (the hashes accepted before a change); the console's live view
// (through apiKeyOf).
import { API_VERSION, type ApiKey, type ApiKeySpec, type ApiKeyState, type ApiKeyStatus, type KeyVersion, type Limits, type UsageStatus } from "../api/types.ts";
import type { CacheForm } from "../k8s/informer.ts";

export interface ApiKeyRecord {
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
  readonly limits: Readonly<Limits> | undefined;
  readonly allowedSources: readonly string[] | undefined;
  readonly rotation: Readonly<NonNullable<ApiKeySpec["rotation"]>> | undefined;
  readonly keyHash: string | undefined;
  readonly existingSecret: Readonly<NonNullable<ApiKeySpec["existingSecret"]>> | undefined;
  /** Whether the ApiKey had a status at all (a new one has none). */
  readonly hasStatus: boolean;
  readonly state: ApiKeyState | undefined;
  readonly currentKeyId: string | undefined;
  readonly lastRotationAt: string | undefined;
  readonly keys: readonly Readonly<KeyVersion>[] | undefined;
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

/** A timestamp as ms since the epoch; undefined when absent or unreadable. */
function timeMs(t: Date | string | undefined): number | undefined {
  if (t === undefined) return undefined;
  const ms = t instanceof Date ? t.getTime() : Date.parse(t);
  return Number.isNaN(ms) ? undefined : ms;
}

/** `ms` as RFC 3339 in UTC, as Kubernetes writes its timestamps: whole seconds without a fraction. */
function rfc3339(ms: number): string {
  const iso = new Date(ms).toISOString();
  return ms % 1000 === 0 ? `${iso.slice(0, 19)}Z` : iso;
}

/** A key version with its fields alone, its repeated strings shared; frozen. */
function keyVersion(v: KeyVersion, pool: ValuePool | undefined): KeyVersion {
  const out: KeyVersion = { id: v.id, hash: v.hash, state: pool ? pool.string(v.state) : v.state };
  if (v.createdAt !== undefined) out.createdAt = pool ? pool.string(v.createdAt) : v.createdAt;
  if (v.expiresAt !== undefined) out.expiresAt = v.expiresAt;
  return Object.freeze(out);
}

/**
 * The record of `ak`: what the readers above read, nothing else, frozen with what it holds
 * (readers share it). With `pool`, repeated values are shared with other records; strings a
 * record holds twice (the current key id, a keyHash equal to a version's hash) are held once.
 */
export function recordOf(ak: ApiKey, pool?: ValuePool): ApiKeyRecord {
  const m = ak.metadata;
  const s = ak.spec;
  const st = ak.status;
  const keys = st?.keys && Object.freeze(st.keys.map((v) => keyVersion(v, pool)));
  const sameAs = (x: string | undefined, pick: (v: KeyVersion) => string): string | undefined => (x === undefined ? undefined : (keys?.map(pick).find((y) => y === x) ?? x));
  const p = <V>(v: V | undefined): V | undefined => (pool ? pool.value(v) : deepFreeze(v));
  const str = <S extends string | undefined>(v: S): S => (pool ? pool.string(v) : v);
  return Object.freeze({
    namespace: str(m.namespace),
    name: m.name,
    uid: m.uid,
    resourceVersion: m.resourceVersion,
    labels: p(m.labels),
    createdMs: timeMs(m.creationTimestamp),
    owner: str(s.owner),
    scopes: p(s.scopes),
    expiresAt: s.expiresAt,
    disabled: s.disabled,
    limits: p(s.limits),
    allowedSources: p(s.allowedSources),
    rotation: p(s.rotation),
    keyHash: sameAs(s.keyHash, (v) => v.hash),
    existingSecret: s.existingSecret,
    hasStatus: st !== undefined,
    state: str(st?.state),
    currentKeyId: sameAs(st?.currentKeyId, (v) => v.id),
    lastRotationAt: st?.lastRotationAt,
    keys,
    usage: st?.usage && deepFreeze(st.usage),
  });
}

/**
 * An ApiKey holding what the record holds: what a reader that reads ApiKeys is handed, the key
 * index joining a watch that has listed, the console. Its parts are the record's own, frozen
 * (the types say otherwise: an ApiKey's are not read-only); a reader that changed one would
 * throw. Fields the record does not hold are undefined; one shape for every ApiKey it makes.
 */
export function apiKeyOf(r: ApiKeyRecord): ApiKey {
  const spec: ApiKeySpec = {
    owner: r.owner,
    scopes: r.scopes as string[] | undefined,
    expiresAt: r.expiresAt,
    disabled: r.disabled,
    limits: r.limits,
    allowedSources: r.allowedSources as string[] | undefined,
    rotation: r.rotation,
    keyHash: r.keyHash,
    existingSecret: r.existingSecret,
  };
  const status: ApiKeyStatus | undefined = r.hasStatus
    ? { state: r.state, currentKeyId: r.currentKeyId, lastRotationAt: r.lastRotationAt, keys: r.keys as KeyVersion[] | undefined, usage: r.usage }
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
  return { keep: (ak) => recordOf(ak, pool), resourceVersion: (r) => r.resourceVersion, expand: apiKeyOf };
}
