// For watchers of ApiKeys that do not care about usage (the operator): tells
// whether an update changed anything besides status.usage, so the others can be
// skipped. The operator's cache drops status.usage on arrival (operator/view.ts),
// so a usage write reaches it as an update that changed nothing it reads.
import type { ApiKey } from "./types.ts";
import { jsonEqual } from "../util/json.ts";

const relevant = (ak: ApiKey): unknown => {
  const { usage: _usage, ...status } = ak.status ?? {};
  const m = ak.metadata;
  return { spec: ak.spec, status, labels: m.labels, annotations: m.annotations, generation: m.generation, deletionTimestamp: m.deletionTimestamp, finalizers: m.finalizers, ownerReferences: m.ownerReferences, uid: m.uid };
};

/**
 * True when `next` differs from `prev` in more than status.usage, resourceVersion and
 * managedFields, or `prev` is unknown.
 */
export function changedBeyondUsage(prev: ApiKey | undefined, next: ApiKey): boolean {
  return prev === undefined || !jsonEqual(relevant(prev), relevant(next));
}
