// A list+watch cache that does not die.
//
// client-node's ListWatch handles 410 Gone and its own 30 s inactivity timeout,
// but stops for good on any other error and cannot be told to relist. This
// informer owns the loop, and streams its lists and watches through keyward's own
// REST client (client-node's Watch would load undici, and with it node:http2, about
// 25 MiB that nothing else in keyward uses):
//
//  - list, then watch from the list's resourceVersion with bookmarks; each listed object is
//    transformed, cached and delivered as it arrives, so a list is never held whole;
//  - on a watch timeout or a clean close: watch again from the last resourceVersion;
//  - on 410 Gone / "too old resource version": relist, and synthesize delete events
//    for objects that vanished meanwhile, so nothing is missed;
//  - on any other error: retry with capped, jittered exponential backoff (1 s -> 30 s);
//  - a staleness watchdog restarts a watch that delivered nothing (not even a
//    bookmark) for `staleAfterMs`; a jittered periodic relist repairs anything else;
//  - every lifecycle step is reported (for a counter per lifecycle event).
//
// The handler is called synchronously for each change, after the cache is updated.
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { KeywardError } from "../errors.ts";
import { KubeApiError, type KubeRest } from "./rest.ts";

export type ChangeType = "add" | "update" | "delete";

export const LIFECYCLE_EVENTS = [
  "list", // initial list done
  "relist", // a later full list (after 410, staleness, resync or errors)
  "connect", // a watch stream opened
  "reconnect", // a watch resumed from the last resourceVersion after it ended
  "gone", // 410 Gone: resourceVersion too old
  "timeout", // the watch was idle past client-node's inactivity timeout
  "error", // list or watch failed; retried with backoff
  "stale", // the watchdog found no activity for staleAfterMs
  "resync", // periodic relist
  "handler_error", // the change handler threw
] as const;
export type LifecycleEvent = (typeof LIFECYCLE_EVENTS)[number];

/**
 * Where a list hands its objects, each as it arrives: `item` for each object listed, `gone` for
 * one a watch-list saw deleted before its initial events ended.
 */
export interface ListSink<T> {
  item(obj: T): void;
  gone(obj: T): void;
}

/** What a list ends with, once every object has been handed to its sink. */
export interface ListEnd {
  resourceVersion: string;
}

/** Opens a watch; returns a function that aborts it. `onDone` is called once when it ends. */
export type WatchFn = (
  query: Record<string, string>,
  onEvent: (type: string, obj: unknown) => void,
  onDone: (err: unknown) => void,
) => Promise<() => void>;

/**
 * What a cache keeps of each delivered object when that is another type than the object (a
 * compact record, say): how to make it, the resourceVersion it was made from, and the object
 * again, for the one delivery of what only the cache holds: the delete of an object a relist
 * no longer finds (its readers read its reference and what the cache keeps of it).
 */
export interface CacheForm<T extends KubernetesObject, K> {
  /** What the cache keeps of `obj`, which it keeps under `key` (its `namespace/name`, the string the cache holds). */
  keep(obj: T, key: string): K;
  resourceVersion(kept: K): string | undefined;
  expand(kept: K): T;
  /**
   * The key `kept` was kept under, when it holds it: the cache then keeps each later version of
   * the object under that one string too, and hands it to readers, so a cache of many objects
   * holds each `namespace/name` once however many hold it.
   */
  keyOf?(kept: K): string;
}

/** The cache keeps `keep(obj)`, an object of the same type (all of it, by default). */
export function sameForm<T extends KubernetesObject>(keep: (obj: T) => T = (o) => o): CacheForm<T, T> {
  return { keep, resourceVersion: (o) => o.metadata?.resourceVersion, expand: (o) => o };
}

export interface InformerOptions<T extends KubernetesObject, K = T> {
  /** Name for logs and metrics, such as "apikeys". */
  name: string;
  /**
   * Lists the collection, handing each object to `sink` as it arrives (event by event, or
   * page by page), holding none of them: the informer transforms, caches and delivers each
   * at once, so a large list is never held whole, received or delivered.
   */
  list: (sink: ListSink<T>) => Promise<ListEnd>;
  /** Opens a watch on the collection. */
  watch: WatchFn;
  /**
   * Each change; `old` is what the cache held for the object before it, `key` the
   * `namespace/name` string the cache holds for it (a reader that keeps it shares the cache's).
   */
  onChange: (type: ChangeType, obj: T, old: K | undefined, key: string) => void;
  onLifecycle?: (event: LifecycleEvent, err?: unknown) => void;
  /**
   * Turns each received object into what is delivered and cached, on arrival (drop
   * large or sensitive fields, say), as client-go's TransformFunc does. Must keep
   * metadata.name, namespace and resourceVersion.
   */
  transform?: (obj: T) => T;
  /**
   * What the cache keeps of each object once its change has been delivered; default
   * all of what `transform` returned (`sameForm()`). For a reader that copies what it
   * needs out of each change (an index) and never reads the cache, this can be the
   * object's reference alone: the cache then costs little more than a name per object.
   * What it keeps is what `get` and `list` return and what later arrives as `old`; the
   * object of a delete found by a relist is `expand`ed from it. Required when K is not T.
   */
  form?: CacheForm<T, K>;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Restart a watch with no activity for this long. Default 180 s. */
  staleAfterMs?: number;
  /** Relist about this often (jittered +-10%); 0 disables. Default 600 s. */
  resyncMs?: number;
  /** Server-side watch timeout, seconds; randomized between this and twice it. Default 300. */
  watchTimeoutSeconds?: number;
  random?: () => number;
  now?: () => number;
}

// join() makes a flat string: a template literal would make a cons string that keeps its parts
// alive too, about 55 bytes more per cached object.
const keyOf = (o: KubernetesObject): string => [o.metadata?.namespace ?? "", o.metadata?.name ?? ""].join("/");

type EndReason = "closed" | "timeout" | "gone" | "error" | "stale" | "resync" | "stopped";

export class Informer<T extends KubernetesObject, K = T> {
  private readonly opts: Required<Omit<InformerOptions<T, K>, "onLifecycle" | "transform" | "form">> & Pick<InformerOptions<T, K>, "onLifecycle">;
  private readonly transform: (obj: T) => T;
  private readonly form: CacheForm<T, K>;
  private readonly cache = new Map<string, K>();
  private resourceVersion = "";
  private stopped = true;
  private hasSynced = false;
  private failures = 0;
  private lastActivity = 0;
  private nextResyncAt = 0;
  private abortCurrent: (() => void) | undefined;
  private wake: ((reason: EndReason) => void) | undefined;
  private sleepTimer: ReturnType<typeof setTimeout> | undefined;
  private loop: Promise<void> | undefined;
  private syncedWaiters: (() => void)[] = [];

  constructor(opts: InformerOptions<T, K>) {
    this.opts = {
      backoffInitialMs: 1000,
      backoffMaxMs: 30_000,
      staleAfterMs: 180_000,
      resyncMs: 600_000,
      watchTimeoutSeconds: 300,
      random: Math.random,
      now: Date.now,
      ...opts,
    };
    this.transform = opts.transform ?? ((o) => o);
    // K is T when no form is given (the option's documentation).
    this.form = opts.form ?? (sameForm<T>() as unknown as CacheForm<T, K>);
  }

  get synced(): boolean {
    return this.hasSynced;
  }

  /** Starts the loop; resolves once the first list has been delivered. */
  start(): Promise<void> {
    if (!this.stopped) return this.waitForSync();
    this.stopped = false;
    this.loop = this.run();
    return this.waitForSync();
  }

  waitForSync(): Promise<void> {
    if (this.hasSynced) return Promise.resolve();
    return new Promise((resolve) => this.syncedWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.interrupt("stopped");
    await this.loop;
  }

  get(namespace: string, name: string): K | undefined {
    return this.cache.get(`${namespace}/${name}`);
  }

  list(): K[] {
    return [...this.cache.values()];
  }

  /** Milliseconds since the last list, event or bookmark. */
  idleMs(): number {
    return this.opts.now() - this.lastActivity;
  }

  private emit(event: LifecycleEvent, err?: unknown): void {
    this.opts.onLifecycle?.(event, err);
  }

  private interrupt(reason: EndReason): void {
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    this.sleepTimer = undefined;
    const abort = this.abortCurrent;
    this.abortCurrent = undefined;
    abort?.();
    this.wake?.(reason);
  }

  private backoffMs(): number {
    const base = Math.min(this.opts.backoffMaxMs, this.opts.backoffInitialMs * 2 ** Math.max(0, this.failures - 1));
    // Full jitter in [base/2, base].
    return Math.round(base / 2 + (base / 2) * this.opts.random());
  }

  private sleep(ms: number): Promise<EndReason> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(() => {
        resolve("closed");
      }, ms);
    });
  }

  private scheduleResync(): void {
    if (this.opts.resyncMs <= 0) {
      this.nextResyncAt = Number.POSITIVE_INFINITY;
      return;
    }
    const jitter = 0.9 + 0.2 * this.opts.random();
    this.nextResyncAt = this.opts.now() + this.opts.resyncMs * jitter;
  }

  /** The cache's key of `obj`, and what the cache holds under it: that key is the string the cache holds when its form knows it. */
  private cached(obj: T): [string, K | undefined] {
    const key = keyOf(obj);
    const old = this.cache.get(key);
    return [old !== undefined && this.form.keyOf ? this.form.keyOf(old) : key, old];
  }

  private deliver(type: ChangeType, obj: T, old: K | undefined, key: string): void {
    try {
      this.opts.onChange(type, obj, old, key);
    } catch (err) {
      this.emit("handler_error", err);
    }
  }

  /**
   * Lists, delivering each object as it arrives and keeping only `form.keep` of it, then
   * deletes what the cache holds that the list did not name: the names seen are all a list
   * holds until it ends. A list that fails midway leaves what it delivered (each as the
   * apiserver had it) and deletes nothing; the relist after it does.
   */
  private async relist(first: boolean): Promise<void> {
    const seen = new Set<string>();
    // Stopped meanwhile: the next object ends the list, so stop() waits for one page, not all.
    const arrived = (raw: T): [T, string, K | undefined] => {
      if (this.isStopped()) throw new ListStopped();
      const obj = this.transform(raw);
      return [obj, ...this.cached(obj)];
    };
    const result = await this.opts.list({
      item: (raw) => {
        const [item, key, old] = arrived(raw);
        seen.add(key);
        this.cache.set(key, this.form.keep(item, key));
        if (old === undefined) this.deliver("add", item, undefined, key);
        else if (this.form.resourceVersion(old) !== item.metadata?.resourceVersion) this.deliver("update", item, old, key);
      },
      gone: (raw) => {
        const [obj, key, old] = arrived(raw);
        seen.delete(key);
        if (old === undefined) return;
        this.cache.delete(key);
        this.deliver("delete", obj, old, key);
      },
    });
    this.lastActivity = this.opts.now();
    for (const [key, old] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.deliver("delete", this.form.expand(old), old, key);
      }
    }
    this.resourceVersion = result.resourceVersion;
    this.scheduleResync();
    this.emit(first ? "list" : "relist");
    if (!this.hasSynced) {
      this.hasSynced = true;
      for (const w of this.syncedWaiters.splice(0)) w();
    }
  }

  private onWatchEvent(type: string, raw: unknown, end: (r: EndReason) => void): void {
    this.lastActivity = this.opts.now();
    if (type === "ERROR") {
      // A Status object: 410 Gone means our resourceVersion is too old.
      end((raw as { code?: number }).code === 410 ? "gone" : "error");
      return;
    }
    if (type !== "ADDED" && type !== "MODIFIED" && type !== "DELETED" && type !== "BOOKMARK") return;
    const obj = type === "BOOKMARK" ? (raw as T) : this.transform(raw as T);
    switch (type) {
      case "ADDED":
      case "MODIFIED": {
        const [key, old] = this.cached(obj);
        this.cache.set(key, this.form.keep(obj, key));
        this.deliver(old === undefined ? "add" : "update", obj, old, key);
        break;
      }
      case "DELETED": {
        const [key, old] = this.cached(obj);
        this.cache.delete(key);
        this.deliver("delete", obj, old, key);
        break;
      }
      case "BOOKMARK":
        break;
    }
    this.failures = 0;
    const rv = obj.metadata?.resourceVersion;
    if (rv) this.resourceVersion = rv;
  }

  /** Runs one watch until it ends; returns why it ended. */
  private watchOnce(): Promise<EndReason> {
    return new Promise<EndReason>((resolve) => {
      let ended = false;
      const timers: ReturnType<typeof setInterval>[] = [];
      const end = (reason: EndReason, err?: unknown): void => {
        if (ended) return;
        ended = true;
        for (const t of timers) clearInterval(t);
        const abort = this.abortCurrent;
        this.abortCurrent = undefined;
        abort?.();
        this.wake = undefined;
        if (reason === "error") this.lastError = err;
        resolve(reason);
      };
      this.wake = end;
      const span = this.opts.watchTimeoutSeconds;
      const query: Record<string, string> = {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: "true",
        timeoutSeconds: String(Math.round(span + span * this.opts.random())),
      };
      const resyncCheck = this.opts.resyncMs > 0 ? this.opts.resyncMs / 4 : Number.POSITIVE_INFINITY;
      const check = Math.max(20, Math.min(this.opts.staleAfterMs / 4, resyncCheck, 5000));
      timers.push(
        setInterval(() => {
          if (this.opts.now() - this.lastActivity > this.opts.staleAfterMs) end("stale");
          else if (this.opts.now() >= this.nextResyncAt) end("resync");
        }, check),
      );
      this.opts
        .watch(
          query,
          (type, obj) => {
            if (!ended) this.onWatchEvent(type, obj, end);
          },
          (err) => {
            if (!err) end("closed");
            else if (isTimeout(err)) end("timeout");
            else if (isGone(err)) end("gone");
            else end("error", err);
          },
        )
        .then(
          (abort) => {
            if (ended) abort();
            else {
              this.abortCurrent = abort;
              this.lastActivity = this.opts.now();
              this.emit("connect");
            }
          },
          (err: unknown) => {
            end("error", err);
          },
        );
    });
  }

  private lastError: unknown;

  /** A method, not a field read, so the compiler does not assume it stays unchanged across awaits. */
  private isStopped(): boolean {
    return this.stopped;
  }

  private async run(): Promise<void> {
    let needList = true;
    let first = true;
    while (!this.isStopped()) {
      if (needList) {
        try {
          await this.relist(first);
          first = false;
          needList = false;
          this.failures = 0;
        } catch (err) {
          if (this.isStopped()) break;
          this.failures++;
          this.emit("error", err);
          await this.sleep(this.backoffMs());
          continue;
        }
      }
      if (this.isStopped()) break;
      const reason = await this.watchOnce();
      if (this.isStopped() || reason === "stopped") break;
      switch (reason) {
        case "closed":
          this.emit("reconnect");
          break;
        case "timeout":
          this.emit("timeout");
          break;
        case "gone":
          this.emit("gone");
          needList = true;
          break;
        case "stale":
          this.emit("stale");
          needList = true;
          break;
        case "resync":
          this.emit("resync");
          needList = true;
          break;
        case "error":
          this.failures++;
          this.emit("error", this.lastError);
          // After repeated failures the resourceVersion may be long gone: relist.
          if (this.failures >= 3) needList = true;
          await this.sleep(this.backoffMs());
          break;
      }
    }
  }
}

/** Ends a list that is still paging when its informer stops. */
class ListStopped extends Error {
  constructor() {
    super("informer stopped during a list");
    this.name = "ListStopped";
  }
}

function isTimeout(err: unknown): boolean {
  return typeof err === "object" && err !== null && "name" in err && err.name === "TimeoutError";
}

function isGone(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { statusCode?: unknown; code?: unknown; status?: unknown };
  return e.statusCode === 410 || e.code === 410 || e.status === 410;
}

/** The annotation of the bookmark that ends a watch-list's initial events. */
const INITIAL_EVENTS_END = "k8s.io/initial-events-end";

/**
 * Lists a collection as a watch that first sends every object (the apiserver's watch-list,
 * client-go's WatchListClient): the objects stream from the apiserver's watch cache one event
 * a line, each handed to `sink` as it arrives, until the bookmark that ends the initial events
 * gives the list's resourceVersion. A paged list makes the apiserver do far more work per
 * object (at 10,000 ApiKeys about five times the time to list), and holds a page whole.
 */
export async function watchList<T extends KubernetesObject>(rest: KubeRest, path: string, selectors: Record<string, string>, sink: ListSink<T>): Promise<ListEnd> {
  let resourceVersion: string | undefined;
  const query = { watch: "true", sendInitialEvents: "true", resourceVersionMatch: "NotOlderThan", allowWatchBookmarks: "true", ...selectors };
  await rest.streamLines(path, query, (line) => {
    const ev = JSON.parse(line) as { type?: string; object?: T & { code?: number; reason?: string; message?: string } };
    const obj = ev.object;
    if (!obj) return false;
    switch (ev.type) {
      case "ADDED":
      case "MODIFIED":
        sink.item(obj);
        return false;
      case "DELETED":
        sink.gone(obj);
        return false;
      case "BOOKMARK":
        if (obj.metadata?.annotations?.[INITIAL_EVENTS_END] !== "true") return false;
        resourceVersion = obj.metadata.resourceVersion ?? "";
        return true;
      case "ERROR":
        throw new KubeApiError(obj.code ?? 0, obj.reason ?? "", obj.message ?? `watch-list of ${path} failed`);
      default:
        return false;
    }
  });
  if (resourceVersion === undefined) throw new KubeApiError(0, "", `watch-list of ${path} ended before its initial events did`);
  return { resourceVersion };
}

/**
 * Opens a watch on `path` through `rest`, as client-node's Watch did: each event line parsed and
 * handed to `onEvent` (a line that does not parse is skipped), `onDone` called once when the
 * stream ends (null), fails (a KubeApiError with the status, so 410 is seen as Gone), or sends
 * nothing for the client's timeout (a KubeTimeoutError, named TimeoutError). Resolves with the
 * function that aborts it once the answer streams, or once it has already ended.
 */
export function kubeWatch(rest: Pick<KubeRest, "streamLines">, path: string, query: Record<string, string>, onEvent: (type: string, obj: unknown) => void, onDone: (err: unknown) => void): Promise<() => void> {
  const stop = new AbortController();
  const abort = (): void => {
    stop.abort();
  };
  return new Promise((opened) => {
    const line = (text: string): boolean => {
      let ev: { type?: unknown; object?: unknown };
      try {
        ev = JSON.parse(text) as { type?: unknown; object?: unknown };
      } catch {
        return false;
      }
      if (typeof ev.type === "string") onEvent(ev.type, ev.object);
      return false;
    };
    rest.streamLines(path, { ...query, watch: "true" }, line, { signal: stop.signal, long: true, onOpen: () => { opened(abort); } }).then(
      () => {
        opened(abort);
        onDone(null);
      },
      (err: unknown) => {
        opened(abort);
        onDone(err);
      },
    );
  });
}

/** An apiserver that does not serve watch-lists (an older one, or the feature turned off) refuses the request as invalid. */
const refusesWatchList = (err: unknown): boolean => err instanceof KubeApiError && (err.status === 400 || err.status === 422);

/**
 * list + watch functions for a collection path on a real apiserver. Lists by watch-list
 * (`watchList`); where the apiserver refuses it, by pages of 500 from then on.
 */
export function kubeListWatch<T extends KubernetesObject>(
  kc: KubeConfig,
  rest: KubeRest,
  path: string,
  selectors: { labelSelector?: string; fieldSelector?: string } = {},
): { list: (sink: ListSink<T>) => Promise<ListEnd>; watch: WatchFn } {
  let byWatch = true;
  const paged = async (sink: ListSink<T>): Promise<ListEnd> => {
    let cont: string | undefined;
    let rv = "";
    do {
      const page = await rest.request<{ items: T[]; metadata: { resourceVersion?: string; continue?: string } }>("GET", path, {
        query: { limit: "500", continue: cont, ...selectors },
      });
      for (const item of page.items) sink.item(item);
      rv = page.metadata.resourceVersion ?? rv;
      cont = page.metadata.continue || undefined;
    } while (cont);
    return { resourceVersion: rv };
  };
  return {
    list: async (sink) => {
      if (byWatch) {
        try {
          return await watchList(rest, path, selectors, sink);
        } catch (err) {
          if (!refusesWatchList(err)) throw err;
          byWatch = false;
        }
      }
      return paged(sink);
    },
    watch: (query, onEvent, onDone) => kubeWatch(rest, path, { ...query, ...selectors }, onEvent, onDone),
  };
}

/**
 * Collection paths to watch: cluster-wide, or one per namespace when `namespaces` is not empty.
 * `apiPrefix` is "/api/v1" for core resources or "/apis/<group>/<version>".
 */
export function collectionPaths(apiPrefix: string, plural: string, namespaces: readonly string[]): string[] {
  if (namespaces.length === 0) return [`${apiPrefix}/${plural}`];
  return namespaces.map((ns) => `${apiPrefix}/namespaces/${encodeURIComponent(ns)}/${plural}`);
}

export interface CollectionWatchOptions<T extends KubernetesObject, K = T>
  extends Omit<InformerOptions<T, K>, "name" | "list" | "watch" | "staleAfterMs" | "resyncMs" | "onChange"> {
  /** "/api/v1" for core resources or "/apis/<group>/<version>". */
  apiPrefix: string;
  plural: string;
  /** Namespaces to watch; empty means the whole cluster. */
  namespaces: readonly string[];
  /** Lists and watches only the objects with these labels (a label selector, `a=b,c`). */
  labelSelector?: string;
  staleAfterMs: number;
  resyncMs: number;
  /** The first listener's changes; more readers can `listen` later. */
  onChange?: InformerOptions<T, K>["onChange"];
}

/** One reader of a shared watch: its changes and lifecycle events. */
export interface WatchListener<T extends KubernetesObject, K = T> {
  onChange?: InformerOptions<T, K>["onChange"];
  onLifecycle?: InformerOptions<T, K>["onLifecycle"];
}

/**
 * One resource watched cluster-wide or in a set of namespaces: one informer per
 * collection path, read as a single cache.
 *
 * Several readers can share it (one list and one watch for all, client-go's shared
 * informer): each `listen`s for changes before the watch starts, so each hears every object
 * as it is listed, whole (as `transform` delivers it). A reader cannot join later: it would
 * have to be handed the cached objects, and the cache keeps only what the readers read of
 * the cache (`form`), not what each reads of a change. Each reader calls `start` and `stop`;
 * the first start starts the watch, the first stop ends it.
 */
export class CollectionWatch<T extends KubernetesObject, K = T> {
  readonly informers: Informer<T, K>[];
  private readonly listeners: WatchListener<T, K>[] = [];
  private readonly plural: string;
  private started = false;

  constructor(kc: KubeConfig, rest: KubeRest, opts: CollectionWatchOptions<T, K>) {
    const { apiPrefix, plural, namespaces, labelSelector, onChange, onLifecycle, ...informerOpts } = opts;
    this.plural = plural;
    const selectors = labelSelector ? { labelSelector } : {};
    if (onChange || onLifecycle) this.listeners.push({ onChange, onLifecycle });
    this.informers = collectionPaths(apiPrefix, plural, namespaces).map(
      (path) =>
        new Informer<T, K>({
          name: plural,
          ...kubeListWatch<T>(kc, rest, path, selectors),
          ...informerOpts,
          onChange: (type, obj, old, key) => {
            this.changed(type, obj, old, key);
          },
          onLifecycle: (event, err) => {
            for (const l of this.listeners) l.onLifecycle?.(event, err);
          },
        }),
    );
  }

  /**
   * Adds a reader, which hears every change from the first listed object on. Only before the
   * watch starts: a reader joining later throws (KeywardError WatchStarted), as it would miss
   * the objects listed already. What one reader throws is reported to the lifecycle
   * listeners as a handler_error and keeps no other reader from its change.
   */
  listen(listener: WatchListener<T, K>): void {
    if (this.started) throw new KeywardError("WatchStarted", `a reader of the ${this.plural} watch joined after it started; readers register before the watch lists`);
    this.listeners.push(listener);
  }

  private changed(type: ChangeType, obj: T, old: K | undefined, key: string): void {
    for (const l of this.listeners) this.deliver(l, type, obj, old, key);
  }

  private deliver(l: WatchListener<T, K>, type: ChangeType, obj: T, old: K | undefined, key: string): void {
    try {
      l.onChange?.(type, obj, old, key);
    } catch (err) {
      for (const each of this.listeners) each.onLifecycle?.("handler_error", err);
    }
  }

  get synced(): boolean {
    return this.informers.every((i) => i.synced);
  }

  get(namespace: string, name: string): K | undefined {
    for (const inf of this.informers) {
      const obj = inf.get(namespace, name);
      if (obj) return obj;
    }
    return undefined;
  }

  list(): K[] {
    return this.informers.flatMap((i) => i.list());
  }

  async start(): Promise<void> {
    this.started = true;
    await Promise.all(this.informers.map((i) => i.start()));
  }

  async stop(): Promise<void> {
    await Promise.all(this.informers.map((i) => i.stop()));
  }
}
