// The key index on the ApiKey watch shared with usage: it joins before the watch lists and
// reads each change as the watch delivers it, so its entries are the whole object's though
// the watch's cache keeps records without the index's fields (ADR 0060).
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { apiKey, newKey } from "../api/fixtures.test-support.ts";
import type { ApiKey } from "../api/types.ts";
import { recordOf } from "../apikeys/record.ts";
import { indexView, usageView } from "../apikeys/views.ts";
import type { ApiKeyWatch } from "../apikeys/watch.ts";
import { KeyIndex, keyDigest } from "../index/keys.ts";
import type { ChangeType, WatchListener } from "../k8s/informer.ts";
import { unionOfViews } from "../k8s/views.ts";
import type { ApiKeyRecord } from "../apikeys/record.ts";
import { joinSharedApiKeyWatch } from "./shared-index.ts";

const silent = { warn: () => undefined };
const delivered = unionOfViews(indexView, usageView);

/** A watch that hands its listeners what the test delivers, as the shared watch does. */
function fakeWatch(): { watch: ApiKeyWatch; deliver: (type: ChangeType, ak: ApiKey, old?: ApiKeyRecord) => void; lifecycle: (e: "error") => void } {
  const listeners: WatchListener<ApiKey, ApiKeyRecord>[] = [];
  const watch = { listen: (l: WatchListener<ApiKey, ApiKeyRecord>) => listeners.push(l) } as unknown as ApiKeyWatch;
  return {
    watch,
    deliver: (type, ak, old) => {
      for (const l of listeners) l.onChange?.(type, ak, old, [ak.metadata.namespace, ak.metadata.name].join("/"));
    },
    lifecycle: (e) => {
      for (const l of listeners) l.onLifecycle?.(e, new Error("x"));
    },
  };
}

function rich(): { ak: ApiKey; keys: string[] } {
  const active = newKey("kw_AAAAAAAA");
  const grace = newKey("kw_BBBBBBBB", "grace", "2999-01-01T00:00:00Z");
  const ak = apiKey(
    "shop",
    "acme",
    { owner: "team-a", scopes: ["orders:read"], expiresAt: "2999-01-01T00:00:00Z", allowedSources: ["10.0.0.0/8"], limits: { rate: { requests: 5, per: "1s" }, quota: { requests: 9, per: "day" } } },
    [active.version, grace.version],
    { tier: "pro" },
  );
  ak.metadata.creationTimestamp = "2026-01-01T00:00:00Z" as unknown as Date;
  return { ak: JSON.parse(JSON.stringify(ak)) as ApiKey, keys: [active.key, grace.key] };
}

describe("the key index on the shared ApiKey watch", () => {
  it("has the entries the whole ApiKey gives, from what the watch delivers, though the watch's record holds none of the index's fields", () => {
    const { ak, keys } = rich();
    const whole = new KeyIndex();
    whole.apply("add", ak);
    const f = fakeWatch();
    const shared = joinSharedApiKeyWatch(f.watch, silent);
    f.deliver("add", delivered(ak));
    for (const k of keys) {
      const want = whole.lookup(keyDigest(k));
      expect(want).toBeDefined();
      expect(shared.keys.lookup(keyDigest(k))).toEqual(want);
    }
    // An ApiKey made back from the record would not do: it has no hashes.
    expect(JSON.stringify(recordOf(delivered(ak)))).not.toContain(ak.status?.keys?.[0]?.hash.slice(7));
  });

  it("tells the data plane of deletes and lifecycle events once attached", () => {
    const { ak, keys } = rich();
    const f = fakeWatch();
    const shared = joinSharedApiKeyWatch(f.watch, silent);
    f.deliver("add", delivered(ak));
    const deleted: string[] = [];
    const events: string[] = [];
    shared.attach({ onDelete: (o) => deleted.push(o.metadata.name), onLifecycle: (e) => events.push(e) });
    f.lifecycle("error");
    f.deliver("delete", delivered(ak), recordOf(delivered(ak)));
    expect(deleted).toEqual(["acme"]);
    expect(events).toEqual(["error"]);
    expect(shared.keys.lookup(keyDigest(keys[0]!))).toBeUndefined();
  });

  it("holds each ApiKey's namespace/name in one string: the watch's cache key, its record and the index's entries share it", async () => {
    // In a child process whose heap holds little else; it counts the strings in a heap snapshot
    // after a list and an update of each ApiKey (src/authz/shared-strings.test-support.ts).
    const child = fileURLToPath(new URL("./shared-strings.test-support.ts", import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [child], { timeout: 60_000 });
    const copies = Object.values(JSON.parse(stdout) as Record<string, number>);
    expect(copies).toEqual([1, 1, 1]);
  }, 60_000);
});
