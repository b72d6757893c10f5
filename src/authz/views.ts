// What the data plane's ApiKeyPolicy watch keeps of each object (ADR 0034): the policy
// table copies what it reads out of each change, so each change is cut on arrival to
// that. The ApiKey views are in src/apikeys (shared with usage).
import type { ApiKeyPolicy } from "../api/types.ts";

/**
 * What the policy table (src/policy) reads of an ApiKeyPolicy: the spec, and of metadata
 * the reference, generation and creationTimestamp (it decides which policy owns a host).
 * Dropped: status, labels, annotations, managedFields.
 */
export function policyView(p: ApiKeyPolicy): ApiKeyPolicy {
  const { name, namespace, uid, resourceVersion, generation, creationTimestamp } = p.metadata;
  return { apiVersion: p.apiVersion, kind: p.kind, metadata: { name, namespace, uid, resourceVersion, generation, creationTimestamp }, spec: p.spec };
}
