// What each watch's view of an ApiKey costs in the heap, per key: N issued ApiKeys as a
// list delivers them (JSON, managedFields of the two writers included, no status.usage),
// each parsed and cut by a view, kept in a Map by namespace/name as an informer keeps it.
//
//   node --expose-gc bench/views.ts [--keys 20000]
import { parseArgs } from "node:util";
import type { ApiKey } from "../src/api/types.ts";
import { apiKeyRef, indexView, usageView } from "../src/apikeys/views.ts";
import { recordOf, ValuePool } from "../src/apikeys/record.ts";
import { operatorView } from "../src/operator/view.ts";
import { unionOfViews } from "../src/k8s/views.ts";
import { apiKeyObject } from "./lib/fixture.ts";

export interface ViewCost {
  view: string;
  bytesPerKey: number;
}

/** Key i as the apiserver lists it once issued: the two writers' managedFields, the operator's status. */
function listed(i: number): string {
  const ak = apiKeyObject(i, "startup-10000");
  const time = "2026-12-01T12:09:29Z" as unknown as Date;
  ak.metadata.resourceVersion = String(100_000 + i);
  ak.metadata.generation = 1;
  ak.metadata.creationTimestamp = time;
  ak.metadata.managedFields = [
    { manager: "kubectl", operation: "Update", apiVersion: "keyward.dev/v1alpha1", time, fieldsType: "FieldsV1", fieldsV1: { "f:metadata": { "f:labels": { ".": {}, "f:tier": {} } }, "f:spec": { ".": {}, "f:keyHash": {}, "f:owner": {}, "f:scopes": {} } } },
    { manager: "keyward-operator", operation: "Update", apiVersion: "keyward.dev/v1alpha1", time, fieldsType: "FieldsV1", fieldsV1: { "f:status": { ".": {}, "f:conditions": {}, "f:currentKeyId": {}, "f:keys": {}, "f:observedGeneration": {}, "f:secretName": {}, "f:state": {} } }, subresource: "status" },
  ];
  ak.status = { ...ak.status, currentKeyId: ak.status?.keys?.[0]?.id, secretName: `k-${i}-apikey`, observedGeneration: 1 };
  return JSON.stringify(ak);
}

export function viewCosts(n: number): ViewCost[] {
  const gc = globalThis.gc;
  if (!gc) throw new Error("run with node --expose-gc");
  const texts = Array.from({ length: n }, (_, i) => listed(i));
  const pool = new ValuePool();
  const shared = unionOfViews(indexView, usageView);
  const views: [string, (ak: ApiKey, key: string) => unknown][] = [
    ["whole object", (ak) => ak],
    ["operator (operatorView)", operatorView],
    ["usage (usageView)", usageView],
    ["index, delivered (indexView)", indexView],
    ["index, cached (apiKeyRef)", (ak) => apiKeyRef(indexView(ak))],
    ["index ∪ usage as an object (the shared watch's cache before ADR 54)", shared],
    ["data plane's shared watch, cached (its record, ADR 54, 60, 68)", (ak, key) => recordOf(shared(ak), pool, key)],
  ];
  return views.map(([view, f]) => {
    gc();
    const before = process.memoryUsage().heapUsed;
    const cache = new Map<string, unknown>();
    for (const t of texts) {
      const ak = JSON.parse(t) as ApiKey;
      // As the informer keys its cache: one flat string (src/k8s/informer.ts keyOf), handed to
      // what it keeps (a record holds it rather than its name, ADR 0068).
      const key = [ak.metadata.namespace, ak.metadata.name].join("/");
      cache.set(key, f(ak, key));
    }
    gc();
    const bytesPerKey = Math.round((process.memoryUsage().heapUsed - before) / n);
    cache.clear();
    return { view, bytesPerKey };
  });
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { keys: { type: "string", default: "20000" } } });
  process.stdout.write(JSON.stringify(viewCosts(Number(values.keys)), null, 2) + "\n");
}
