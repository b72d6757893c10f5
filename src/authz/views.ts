// What the data plane's watches keep of each object (ADR 0034). Both watches feed
// compiled tables (the key index, the policy table) that copy what they read out of
// each change; the objects themselves are never read again. So each change is cut
// on arrival to what those tables read, and the ApiKey cache keeps only each
// ApiKey's reference: what a relist needs to find deletes, and what a delete needs
// (namespace, name, uid).
import type { ApiKey, ApiKeyPolicy, ApiKeySpec } from "../api/types.ts";

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

/** What the ApiKey cache keeps once the index has the change: the reference alone. */
export function apiKeyRef(ak: ApiKey): ApiKey {
  const { name, namespace, uid, resourceVersion } = ak.metadata;
  return { apiVersion: ak.apiVersion, kind: ak.kind, metadata: { name, namespace, uid, resourceVersion }, spec: NO_SPEC };
}

/**
 * What the policy table (src/policy) reads of an ApiKeyPolicy: the spec, and of metadata
 * the reference, generation and creationTimestamp (it decides which policy owns a host).
 * Dropped: status, labels, annotations, managedFields.
 */
export function policyView(p: ApiKeyPolicy): ApiKeyPolicy {
  const { name, namespace, uid, resourceVersion, generation, creationTimestamp } = p.metadata;
  return { apiVersion: p.apiVersion, kind: p.kind, metadata: { name, namespace, uid, resourceVersion, generation, creationTimestamp }, spec: p.spec };
}
