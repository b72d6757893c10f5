// The ApiKey watches of usage and the data plane, and the one they share when both run in
// one process (ADR 0034, ADR 0049): one list and one watch, each change cut on arrival to
// what the index and usage read, and the cache keeping a compact record per ApiKey
// (record.ts, ADR 0054).
import type { KubeConfig } from "@kubernetes/client-node";
import { APIKEY_PLURAL, API_VERSION, type ApiKey } from "../api/types.ts";
import type { Config } from "../config/config.ts";
import { CollectionWatch, type WatchListener } from "../k8s/informer.ts";
import type { KubeRest } from "../k8s/rest.ts";
import { unionOfViews } from "../k8s/views.ts";
import { recordForm, type ApiKeyRecord } from "./record.ts";
import { indexView, usageView } from "./views.ts";

/** An ApiKey watch whose changes deliver ApiKeys (cut to a view) and whose cache keeps records. */
export type ApiKeyWatch = CollectionWatch<ApiKey, ApiKeyRecord>;

export interface ApiKeyWatchDeps {
  kc: KubeConfig;
  rest: KubeRest;
  config: Pick<Config, "namespaces" | "watchStaleAfter" | "watchResync">;
}

function apiKeyWatch(d: ApiKeyWatchDeps, transform: (ak: ApiKey) => ApiKey, listener: WatchListener<ApiKey, ApiKeyRecord> = {}): ApiKeyWatch {
  return new CollectionWatch<ApiKey, ApiKeyRecord>(d.kc, d.rest, {
    apiPrefix: `/apis/${API_VERSION}`,
    plural: APIKEY_PLURAL,
    namespaces: d.config.namespaces,
    staleAfterMs: d.config.watchStaleAfter,
    resyncMs: d.config.watchResync,
    ...listener,
    transform,
    form: recordForm(),
  });
}

/**
 * The one ApiKey watch of usage and the data plane in one process: changes delivered as
 * the union of what the index and usage read, each ApiKey cached as its record (which
 * holds what the index reads too, for an index that joins after the list).
 */
export function sharedApiKeyWatch(d: ApiKeyWatchDeps): ApiKeyWatch {
  return apiKeyWatch(d, unionOfViews(indexView, usageView));
}

/** Usage's own ApiKey watch, where the data plane runs in other processes: changes cut to usageView. */
export function usageApiKeyWatch(d: ApiKeyWatchDeps, listener: WatchListener<ApiKey, ApiKeyRecord>): ApiKeyWatch {
  return apiKeyWatch(d, usageView, listener);
}
