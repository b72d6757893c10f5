// For watchers of ApiKeys that do not care about usage (the operator): tells
// whether an update changed nothing but status.usage, so it can be skipped.
import type { ApiKey } from "./types.ts";
import { jsonEqual } from "../util/json.ts";

const relevant = (ak: ApiKey): unknown => {
  const { usage: _usage, ...status } = ak.status ?? {};
  const m = ak.metadata;
  return { spec: ak.spec, status, labels: m.labels, annotations: m.annotations, generation: m.generation, deletionTimestamp: m.deletionTimestamp, finalizers: m.finalizers, ownerReferences: m.ownerReferences, uid: m.uid };
};

/** True when `next` differs from `prev` only in status.usage (and resourceVersion / managedFields). */
export function onlyUsageChanged(prev: ApiKey | undefined, next: ApiKey): boolean {
  if (!prev) return false;
  return !jsonEqual(prev.status?.usage, next.status?.usage) && jsonEqual(relevant(prev), relevant(next));
}
