// Run as a child process by shared-index.test.ts, so that its heap holds little else: lists
// ApiKeys through an informer that keeps records (as the shared ApiKey watch does), with a key
// index joined before the list, updates each once through the watch, then prints how many
// strings in the heap hold each ApiKey's `namespace/name`, as JSON on stdout.
import { text } from "node:stream/consumers";
import { getHeapSnapshot } from "node:v8";
import { apiKey, newKey } from "../api/fixtures.test-support.ts";
import type { ApiKey } from "../api/types.ts";
import { recordForm, type ApiKeyRecord } from "../apikeys/record.ts";
import { indexView, usageView } from "../apikeys/views.ts";
import type { ApiKeyWatch } from "../apikeys/watch.ts";
import { Informer, type WatchListener } from "../k8s/informer.ts";
import { unionOfViews } from "../k8s/views.ts";
import { joinSharedApiKeyWatch } from "./shared-index.ts";

const marker = `uniq${process.pid.toString(36)}${Date.now().toString(36)}`;
const names = [0, 1, 2].map((i) => `${marker}-${i}`);
const items = names.map((name, i) => {
  const ak = apiKey("shop", name, {}, [newKey(`kw_${String(i).padStart(8, "0")}`).version]);
  ak.metadata.resourceVersion = "1";
  return ak;
});

const listeners: WatchListener<ApiKey, ApiKeyRecord>[] = [];
const shared = joinSharedApiKeyWatch({ listen: (l: WatchListener<ApiKey, ApiKeyRecord>) => listeners.push(l) } as unknown as ApiKeyWatch, { warn: () => undefined });
let send: ((type: string, obj: unknown) => void) | undefined;
const informer = new Informer<ApiKey, ApiKeyRecord>({
  name: "apikeys",
  list: (sink) => {
    for (const ak of items) sink.item(structuredClone(ak));
    return Promise.resolve({ resourceVersion: "1" });
  },
  watch: (_query, onEvent) => {
    send = onEvent;
    return Promise.resolve(() => undefined);
  },
  transform: unionOfViews(indexView, usageView),
  form: recordForm(),
  onChange: (type, obj, old, key) => {
    for (const l of listeners) l.onChange?.(type, obj, old, key);
  },
});
await informer.start();
const deadline = Date.now() + 5000;
while (!send && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
for (const ak of items) send?.("MODIFIED", { ...structuredClone(ak), metadata: { ...ak.metadata, resourceVersion: "2", labels: { changed: "yes" } } });
if (shared.keys.apiKeyCount !== items.length || informer.list().length !== items.length) throw new Error("the ApiKeys were not all listed");

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}
// A heap snapshot collects the garbage first: what it holds is what stays.
const snap = JSON.parse(await text(getHeapSnapshot())) as Snapshot;
const fields = snap.snapshot.meta.node_fields;
const types = snap.snapshot.meta.node_types[0];
const [typeAt, nameAt] = [fields.indexOf("type"), fields.indexOf("name")];
const wanted = new Map(names.map((n) => [`shop/${n}`, 0]));
for (let i = 0; i < snap.nodes.length; i += fields.length) {
  if (!(types[snap.nodes[i + typeAt] ?? -1] ?? "").includes("string")) continue;
  const s = snap.strings[snap.nodes[i + nameAt] ?? -1] ?? "";
  const n = wanted.get(s);
  if (n !== undefined) wanted.set(s, n + 1);
}
await informer.stop();
process.stdout.write(JSON.stringify(Object.fromEntries(wanted)));
