// Carries per-key usage from the ext_authz process to ApiKey status.usage.
//
// Checks add to an in-memory delta per ApiKey. Every interval the flusher
// takes the deltas, adds each to the usage stored in the ApiKey (from a watch
// cache) and writes the result with one JSON merge patch on /status that
// touches only `usage` and carries the resourceVersion it was computed from.
// A 409 (someone wrote since) re-reads the ApiKey and retries once; any other
// failure puts the delta back for the next interval, so nothing is counted
// twice and nothing is lost while the apiserver is away. At most one write per
// key per interval, and none when the usage did not change. Keys with stored
// usage but no traffic are rewritten only when a window rolls over (an hour
// or day drops out of requests24h / daily), so idle keys decay to zero.
//
// What a key's stored usage becomes without traffic depends on the clock only
// through the hour (the 24 h window moves by hours; days, quota periods and
// months start on hours) and otherwise only on the key's record (its usage,
// key versions and quota period). So keys without traffic are looked at in the
// first flush of each UTC hour, and in between only those whose record changed
// (keyChanged) or whose last write failed: an idle data plane of 100,000 keys
// does not merge 100,000 usages every interval.
import type { ApiKey, UsageStatus } from "../api/types.ts";
import { recordOf, type ApiKeyRecord } from "../apikeys/record.ts";
import { jsonEqual } from "../util/json.ts";
import { API_VERSION, APIKEY_PLURAL } from "../api/types.ts";
import type { Clock } from "../k8s/clock.ts";
import { isConflict, isNotFound, type KubeRest } from "../k8s/rest.ts";
import type { Logger } from "../log.ts";
import type { CheckEvent, UpstreamEvent } from "../check/event.ts";
import { addCheck, addUpstream, mergeUsage, newDelta, type KeyDelta } from "./model.ts";

/** Read access to the ApiKeys the flusher writes to (a watch cache of their records). */
export interface ApiKeyStore {
  get(namespace: string, name: string): ApiKeyRecord | undefined;
  list(): ApiKeyRecord[];
  /** False until the store's first list is in; meanwhile a flush writes nothing and keeps what is pending. */
  readonly synced?: boolean;
}

export type FlushResult = "written" | "unchanged" | "conflict" | "gone" | "error";

export interface FlusherOptions {
  rest: Pick<KubeRest, "request">;
  store: ApiKeyStore;
  clock: Clock;
  intervalMs: number;
  topRoutes: number;
  log: Logger;
  /** Field manager of the patches. */
  fieldManager?: string;
  onResult?: (result: FlushResult) => void;
}

export interface FlushReport {
  written: number;
  failed: number;
}

const refOf = (ns: string, name: string): string => `${ns}/${name}`;
const HOUR_MS = 3_600_000;
const pathOf = (ns: string, name: string): string =>
  `/apis/${API_VERSION}/namespaces/${encodeURIComponent(ns)}/${APIKEY_PLURAL}/${encodeURIComponent(name)}`;


/** Adds `from` into `into` (a delta that could not be written goes back). */
export function combineDeltas(into: KeyDelta, from: KeyDelta): void {
  into.lastUsedAt = Math.max(into.lastUsedAt, from.lastUsedAt);
  for (const [id, t] of from.versions) into.versions.set(id, Math.max(into.versions.get(id) ?? 0, t));
  for (const [date, counts] of from.daily) {
    const c = into.daily.get(date) ?? {};
    for (const [k, n] of Object.entries(counts) as [keyof typeof counts, number][]) c[k] = (c[k] ?? 0) + n;
    into.daily.set(date, c);
  }
  for (const [h, n] of from.hourly) into.hourly.set(h, (into.hourly.get(h) ?? 0) + n);
  for (const [p, n] of from.periodAllowed) into.periodAllowed.set(p, (into.periodAllowed.get(p) ?? 0) + n);
  for (const [month, routes] of from.routes) {
    const m = into.routes.get(month) ?? new Map<string, number>();
    for (const [r, n] of routes) m.set(r, (m.get(r) ?? 0) + n);
    into.routes.set(month, m);
  }
}

export class UsageFlusher {
  private readonly options: FlusherOptions;
  private deltas = new Map<string, KeyDelta>();
  private cancelTimer: (() => void) | undefined;
  private running: Promise<FlushReport> | undefined;
  private stopped = false;
  /** The UTC hour (ms / HOUR_MS) of the last flush that looked at every key with stored usage. */
  private walkedHour: number | undefined;
  /** Keys without traffic to look at in the next flush all the same: their record changed, or their write failed. */
  private changed = new Set<string>();

  constructor(opts: FlusherOptions) {
    this.options = opts;
  }

  recordCheck(e: CheckEvent): void {
    if (!e.key || e.outcome === "cancelled") return;
    addCheck(this.deltaFor(e.key), e);
  }

  recordUpstream(e: UpstreamEvent): void {
    addUpstream(this.deltaFor(e.key), e);
  }

  /** What this process saw for the key and has not written yet. */
  pending(namespace: string, name: string): KeyDelta | undefined {
    return this.deltas.get(refOf(namespace, name));
  }

  get pendingKeys(): number {
    return this.deltas.size;
  }

  /** The ApiKey's record changed (its watch saw it): the next flush looks at it, traffic or not. */
  keyChanged(namespace: string, name: string): void {
    this.changed.add(refOf(namespace, name));
  }

  start(): void {
    const arm = (): void => {
      this.cancelTimer = this.options.clock.setTimer(() => {
        void this.flush().finally(() => {
          if (!this.stopped) arm();
        });
      }, this.options.intervalMs);
    };
    arm();
  }

  /** Stops the timer and writes what is pending once more. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelTimer?.();
    await this.flush();
  }

  /** One flush; concurrent calls share the one that runs. */
  flush(): Promise<FlushReport> {
    this.running ??= this.flushOnce().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private deltaFor(key: CheckEvent["key"] & object): KeyDelta {
    const ref = refOf(key.namespace, key.name);
    let d = this.deltas.get(ref);
    if (!d) this.deltas.set(ref, (d = newDelta(key)));
    else if (d.key.uid !== key.uid) {
      // The ApiKey was deleted and created again under the same name: its old counts go with it.
      this.deltas.set(ref, (d = newDelta(key)));
    }
    return d;
  }

  private async flushOnce(): Promise<FlushReport> {
    // Without the ApiKeys, every key would look deleted and its usage be dropped.
    if (this.options.store.synced === false) return { written: 0, failed: 0 };
    const taken = this.deltas;
    this.deltas = new Map();
    const hour = Math.floor(this.options.clock.now() / HOUR_MS);
    const walk = hour !== this.walkedHour;
    const refs = new Set(taken.keys());
    if (walk) {
      for (const r of this.options.store.list()) if (r.usage) refs.add(refOf(r.namespace, r.name));
    }
    for (const ref of this.changed) refs.add(ref);
    this.changed = new Set();
    const report: FlushReport = { written: 0, failed: 0 };
    for (const ref of refs) {
      const delta = taken.get(ref);
      const [ns = "", name = ""] = ref.split("/");
      const result = await this.writeOne(ns, name, delta);
      this.options.onResult?.(result);
      if (result === "written") report.written++;
      if (result === "conflict" || result === "error") {
        report.failed++;
        if (delta) this.putBack(ref, delta);
        else this.changed.add(ref);
      }
    }
    if (walk) this.walkedHour = hour;
    return report;
  }

  private putBack(ref: string, delta: KeyDelta): void {
    const cur = this.deltas.get(ref);
    if (!cur) this.deltas.set(ref, delta);
    else if (cur.key.uid === delta.key.uid) combineDeltas(cur, delta);
  }

  private async writeOne(ns: string, name: string, delta: KeyDelta | undefined): Promise<FlushResult> {
    let ak = this.options.store.get(ns, name);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        if (!ak || attempt > 0) ak = recordOf(await this.options.rest.request<ApiKey>("GET", pathOf(ns, name)));
        if (delta && ak.uid && delta.key.uid !== ak.uid) return "gone";
        const current = ak.usage;
        const next = mergeUsage(current, delta, {
          now: this.options.clock.now(),
          versionIds: ak.keys?.map((k) => k.id),
          quotaPer: ak.quota?.per,
          topRoutes: this.options.topRoutes,
        });
        if (next === undefined || jsonEqual(next, current)) return "unchanged";
        await this.options.rest.request("PATCH", `${pathOf(ns, name)}/status`, {
          body: { metadata: { resourceVersion: ak.resourceVersion }, status: { usage: withNulls(next, current) } },
          contentType: "application/merge-patch+json",
          query: { fieldManager: this.options.fieldManager ?? "keyward-usage" },
        });
        return "written";
      } catch (err) {
        if (isNotFound(err)) return "gone";
        if (isConflict(err) && attempt === 0) continue;
        this.options.log.warn("could not write usage to ApiKey status; keeping it for the next flush", { apikey: `${ns}/${name}`, err });
        return isConflict(err) ? "conflict" : "error";
      }
    }
    return "conflict";
  }
}

/** For a merge patch: usage fields stored now and absent from `next` are sent as null. */
function withNulls(next: UsageStatus, prev: UsageStatus | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = { ...next };
  for (const k of Object.keys(prev ?? {})) if (!(k in out)) out[k] = null;
  return out;
}
