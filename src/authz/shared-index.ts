// The key index fed by the ApiKey watch the data plane shares with usage in one process
// (src/apikeys/watch.ts). It joins that watch before the watch lists, so it hears every
// ApiKey as delivered (indexView's fields, whole) and the watch's cache need not keep what
// only the index reads: the shared records hold what usage and the console read (ADR 0060).
import type { ApiKey } from "../api/types.ts";
import type { ApiKeyWatch } from "../apikeys/watch.ts";
import { KeyIndex } from "../index/keys.ts";
import type { ChangeType, LifecycleEvent } from "../k8s/informer.ts";
import type { Logger } from "../log.ts";

/** What the data plane attaches once it starts: deletes (the limiter forgets the key) and the watch's lifecycle events. */
export interface IndexHooks {
  onDelete(obj: ApiKey): void;
  onLifecycle(event: LifecycleEvent, err?: unknown): void;
}

/** A key index joined to a shared ApiKey watch, and that watch. */
export interface SharedKeyIndex {
  readonly keys: KeyIndex;
  readonly watch: ApiKeyWatch;
  /** Hooks the data plane in: from then on deletes and lifecycle events reach it (none were missed that it needs: the limiter is empty before). */
  attach(hooks: IndexHooks): void;
}

/** A key index whose ApiKey "invalid" warnings go to `log`. */
export function dataPlaneKeyIndex(log: Pick<Logger, "warn">): KeyIndex {
  return new KeyIndex({
    onInvalid: (ref, what) => {
      log.warn("ApiKey partly ignored", { apikey: ref, problem: what });
    },
  });
}

/**
 * Joins a key index to `watch`, which must not have started (CollectionWatch.listen throws
 * otherwise): call it before usage starts the watch.
 */
export function joinSharedApiKeyWatch(watch: ApiKeyWatch, log: Pick<Logger, "warn">): SharedKeyIndex {
  const keys = dataPlaneKeyIndex(log);
  let hooks: IndexHooks | undefined;
  watch.listen({
    onChange: (type: ChangeType, obj: ApiKey, _old, ref: string) => {
      keys.apply(type, obj, ref);
      if (type === "delete") hooks?.onDelete(obj);
    },
    onLifecycle: (event, err) => {
      hooks?.onLifecycle(event, err);
    },
  });
  return {
    keys,
    watch,
    attach: (h) => {
      hooks = h;
    },
  };
}
