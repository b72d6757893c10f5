// What the data plane's and usage's ApiKey watches deliver of each ApiKey (ADR 0034):
// each change cut on arrival to what its readers read. The key index copies what it
// reads out of each change (indexView); usage reads its changes (usageView); and what
// their caches keep lives in record.ts (the shared watch) or is the reference alone.
import type { ApiKey, ApiKeySpec, ApiKeyStatus } from "../api/types.ts";

/**
 * What the key index (src/index/keys.ts) reads of an ApiKey: the spec, status.state and
 * status.keys, and of metadata the reference, the uid, the labels (policy selectors) and
 * creationTimestamp (it dates a claim on a hash whose status version has no createdAt).
 * Dropped: status.usage, conditions and the rest of status, annotations, managedFields.
 */
export function indexView(ak: ApiKey): ApiKey {
  const { name, namespace, uid, resourceVersion, labels, creationTimestamp } = ak.metadata;
  const view: ApiKey = { apiVersion: ak.apiVersion, kind: ak.kind, metadata: { name, namespace, uid, resourceVersion, labels, creationTimestamp }, spec: ak.spec };
  if (ak.status) view.status = { state: ak.status.state, keys: ak.status.keys };
  return view;
}

/** One spec for every kept reference: the cache holds no ApiKey's spec. */
const NO_SPEC: ApiKeySpec = Object.freeze({ owner: "" });

/** What the data plane's own ApiKey cache keeps once the index has the change: the reference alone. */
export function apiKeyRef(ak: ApiKey): ApiKey {
  const { name, namespace, uid, resourceVersion } = ak.metadata;
  return { apiVersion: ak.apiVersion, kind: ak.kind, metadata: { name, namespace, uid, resourceVersion }, spec: NO_SPEC };
}

type ManagedFields = NonNullable<ApiKey["metadata"]["managedFields"]>;

/** The entry of the newest write, holding its time alone (what revocation lag reads), or undefined. */
function newestWrite(fields: ManagedFields | undefined): ManagedFields | undefined {
  let best: { ms: number; time: ManagedFields[number]["time"] } | undefined;
  for (const f of fields ?? []) {
    const ms = f.time ? Date.parse(f.time instanceof Date ? f.time.toISOString() : String(f.time)) : NaN;
    if (!Number.isNaN(ms) && (best === undefined || ms > best.ms)) best = { ms, time: f.time };
  }
  return best ? [{ time: best.time }] : undefined;
}

/**
 * The fields usage reads: the reference, uid and resourceVersion (the flusher's
 * optimistic writes), deletionTimestamp and the newest managedFields time (revocation
 * lag); labels, creationTimestamp and spec.scopes (the analytics store's key records:
 * tags, age and the access review's scopes); spec.owner, expiresAt, disabled and limits;
 * status.state, currentKeyId, keys and usage (the flusher's base). Dropped: the rest of
 * spec (allowedSources, rotation, description), conditions, annotations and every
 * managedFields entry but the time of the newest.
 */
export function usageView(ak: ApiKey): ApiKey {
  const { name, namespace, uid, resourceVersion, deletionTimestamp, managedFields, labels, creationTimestamp } = ak.metadata;
  const s = ak.spec;
  const spec: ApiKeySpec = { owner: s.owner, scopes: s.scopes, expiresAt: s.expiresAt, disabled: s.disabled, limits: s.limits, rotation: s.rotation, keyHash: s.keyHash, existingSecret: s.existingSecret };
  const view: ApiKey = { apiVersion: ak.apiVersion, kind: ak.kind, metadata: { name, namespace, uid, resourceVersion, deletionTimestamp, managedFields: newestWrite(managedFields), labels, creationTimestamp }, spec };
  if (ak.status) {
    const { state, currentKeyId, keys, usage, lastRotationAt } = ak.status;
    const status: ApiKeyStatus = { state, currentKeyId, keys, usage, lastRotationAt };
    view.status = status;
  }
  return view;
}
