// How long ago the data plane last heard from the apiserver about each watched
// resource: any watch event, bookmark or successful list (src/k8s/informer.ts
// idleMs). Exported as keyward_authz_index_staleness_seconds{resource}; with
// --max-index-staleness, checks fail closed (503 `index_stale`) while any
// resource's index is older than that.
//
// The check path reads one boolean: a timer re-evaluates it about ten times per
// allowed staleness (at least once a second), so a check reads no clock for it.
import { Gauge, type Registry } from "prom-client";

/** What is read of an informer (src/k8s/informer.ts Informer). */
export interface StalenessSource {
  readonly synced: boolean;
  /** Milliseconds since the last list, event or bookmark. */
  idleMs(): number;
}

export interface WatchedResource {
  /** The plural, as in keyward_authz_watch_events_total{resource}. */
  resource: string;
  /** One per watched collection path (one per namespace with --namespaces). */
  sources: readonly StalenessSource[];
}

export interface IndexStalenessOptions {
  resources: readonly WatchedResource[];
  /** Checks fail closed once a resource's index is older than this; 0 never. */
  maxMs: number;
  /** The informers' clock (they read Date.now), for the time before a first list. */
  now?: () => number;
}

export class IndexStaleness {
  private readonly options: IndexStalenessOptions;
  private readonly now: () => number;
  private readonly startedMs: number;
  private timer: ReturnType<typeof setInterval> | undefined;
  /** True while some resource's index is older than maxMs; updated by update(). */
  stale = false;

  constructor(options: IndexStalenessOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.startedMs = this.now();
  }

  /** Milliseconds since `resource`'s least recently heard collection heard from the apiserver. */
  ageMs(resource: WatchedResource): number {
    let worst = 0;
    for (const s of resource.sources) {
      // Before its first list a collection is as old as this process's wait for it.
      const age = s.synced ? s.idleMs() : this.now() - this.startedMs;
      if (age > worst) worst = age;
    }
    return worst;
  }

  /** Re-evaluates `stale`. */
  update(): void {
    if (this.options.maxMs <= 0) return;
    let stale = false;
    for (const r of this.options.resources) if (this.ageMs(r) > this.options.maxMs) stale = true;
    this.stale = stale;
  }

  /** Starts re-evaluating `stale` on a timer (nothing to do without maxMs). */
  start(): void {
    if (this.options.maxMs <= 0 || this.timer) return;
    this.timer = setInterval(
      () => {
        this.update();
      },
      Math.max(10, Math.min(1000, this.options.maxMs / 10)),
    );
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** keyward_authz_index_staleness_seconds{resource}, the largest across --authz-workers. */
  register(registry: Registry): void {
    const resources = this.options.resources;
    const ageMs = (r: WatchedResource): number => this.ageMs(r);
    new Gauge({
      name: "keyward_authz_index_staleness_seconds",
      help: "Seconds since the data plane last heard from the apiserver about a watched resource (watch event, bookmark or list), its oldest collection with --namespaces.",
      labelNames: ["resource"] as const,
      aggregator: "max",
      registers: [registry],
      collect() {
        for (const r of resources) this.set({ resource: r.resource }, ageMs(r) / 1000);
      },
    });
  }
}
