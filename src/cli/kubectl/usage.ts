// `kubectl keyward usage` and `kubectl keyward review`: the views of `keyward
// usage` and `keyward review`, read from the usage API through the apiserver (the
// aggregated API usage.keyward.dev, ADR 0046) with the caller's own kubeconfig
// credentials, whatever they are (client certificate, token, OIDC, exec plugin).
// The request is parsed and the answer rendered by the same code as the commands
// that read the store directly; only where the rows come from differs.
import type { UsageFilter } from "../../analytics/queries.ts";
import type { KubeRest } from "../../k8s/rest.ts";
import { VIEWS_PREFIX } from "../../api/usage-group.ts";
import { reviewJson, reviewMarkdown } from "../review-report.ts";
import { parseChoice } from "../args.ts";
import { parseUsageRequest, usageReport, type UsageRequest, type UsageViews } from "../usage.ts";
import type { Parsed } from "./flags.ts";

type Review = Parameters<typeof reviewMarkdown>[0];

/** The flags `keyward usage` reads, from the plugin's. */
const USAGE_FLAGS = ["owner", "selector", "key", "since", "until", "by", "limit", "output"] as const;

type Get = <T>(view: string, query: Record<string, string | undefined>) => Promise<T>;

/** A GET of one view under the aggregated API, with the caller's credentials; the answer's body. */
export function viewGetter(rest: Pick<KubeRest, "request">): Get {
  return (view, query) => rest.request(`GET`, `${VIEWS_PREFIX}/${view}`, { query });
}

/** The usage API's parameters for a filter: one namespace at most, times as RFC 3339. */
function filterQuery(f: UsageFilter): Record<string, string | undefined> {
  return {
    namespace: f.namespaces?.[0],
    owner: f.owner,
    selector: f.selector,
    key: f.key,
    since: new Date(f.since).toISOString(),
    until: new Date(f.until).toISOString(),
  };
}

/** The analytics views, each one GET of the usage API. */
export function apiViews(get: Get): UsageViews {
  const items = async <T>(view: string, f: UsageFilter, more: Record<string, string | undefined> = {}): Promise<T[]> =>
    (await get<{ items: T[] }>(view, { ...filterQuery(f), ...more })).items;
  return {
    topKeys: (f, limit) => items("keys", f, { limit: limit === undefined ? undefined : String(limit) }),
    timeline: (f, step) => items("timeline", f, { step }),
    statusCodes: (f) => items("status-codes", f),
    endpoints: (f, by, limit) => items("endpoints", f, { by, limit: limit === undefined ? undefined : String(limit) }),
    countries: (f, limit) => items("countries", f, { limit: limit === undefined ? undefined : String(limit) }),
    networks: (f, limit) => items("networks", f, { limit: limit === undefined ? undefined : String(limit) }),
  };
}

/** What `kubectl keyward usage [VIEW]` asks for, read as `keyward usage` reads it (ConfigInvalid for a bad value). */
export function usageRequest(view: string, flags: Parsed["flags"], now: number): UsageRequest {
  const values = new Map<string, string>();
  for (const name of USAGE_FLAGS) {
    const v = flags[name];
    if (v !== undefined) values.set(name, v);
  }
  return parseUsageRequest(view ? [view] : [], values, now);
}

/** The view of `request` in `namespace` (undefined: every namespace the caller may read), rendered. */
export function usageThroughApi(get: Get, request: UsageRequest, namespace: string | undefined): Promise<string> {
  const filter = { ...request.filter };
  if (namespace === undefined) delete filter.namespaces;
  else filter.namespaces = [namespace];
  return usageReport(apiViews(get), { ...request, filter });
}

/** Checks `review`'s flags before any request. */
export function reviewOutput(flags: Parsed["flags"]): "markdown" | "json" {
  return parseChoice("output", flags.output ?? "markdown", ["markdown", "json"]);
}

/** `kubectl keyward review` in `namespace` (undefined: every namespace the caller may read). */
export async function reviewThroughApi(get: Get, flags: Parsed["flags"], namespace: string | undefined): Promise<string> {
  const output = reviewOutput(flags);
  const answer = await get<{ item: Review }>("review", { namespace, owner: flags.owner, selector: flags.selector });
  return output === "json" ? reviewJson(answer.item) : reviewMarkdown(answer.item);
}
