// The usage API as the Kubernetes aggregated API usage.keyward.dev/v1alpha1
// (ADR 0046, docs/usage.md "Through the apiserver"): every view the usage API
// serves at /api/v1/<view> is also at /apis/usage.keyward.dev/v1alpha1/views/<view>,
// a cluster-scoped resource `views` whose object name is the view, and the
// discovery documents the apiserver's aggregator reads to mark the APIService
// Available. The mapping knows no view by name: a view the handler learns is
// served under both paths at once.
import { USAGE_GROUP, USAGE_GROUP_VERSION, USAGE_VERSION, VIEWS_PREFIX } from "../api/usage-group.ts";
import { API_PREFIX } from "./api-request.ts";

const groupVersion = { groupVersion: USAGE_GROUP_VERSION, version: USAGE_VERSION };
const group = { name: USAGE_GROUP, versions: [groupVersion], preferredVersion: groupVersion };

/** The discovery documents, by path. */
const DISCOVERY: ReadonlyMap<string, unknown> = new Map<string, unknown>([
  ["/apis", { kind: "APIGroupList", apiVersion: "v1", groups: [group] }],
  [`/apis/${USAGE_GROUP}`, { kind: "APIGroup", apiVersion: "v1", ...group }],
  [
    `/apis/${USAGE_GROUP_VERSION}`,
    {
      kind: "APIResourceList",
      apiVersion: "v1",
      groupVersion: USAGE_GROUP_VERSION,
      resources: [{ name: "views", singularName: "view", namespaced: false, kind: "View", verbs: ["get"] }],
    },
  ],
]);

/** What a request path names under the aggregated API. */
export type AggregatedRoute = { discovery: unknown } | { pathname: string };

/**
 * The discovery document at `pathname`, or the usage API path a view's aggregated path stands for
 * (`/apis/usage.keyward.dev/v1alpha1/views/keys` is `/api/v1/keys`); undefined for any other path.
 */
export function aggregatedRoute(pathname: string): AggregatedRoute | undefined {
  const trimmed = pathname.length > 1 && pathname.endsWith("/") ? pathname.slice(0, -1) : pathname;
  const doc = DISCOVERY.get(trimmed);
  if (doc !== undefined) return { discovery: doc };
  if (pathname === VIEWS_PREFIX) return { pathname: API_PREFIX };
  if (pathname.startsWith(`${VIEWS_PREFIX}/`)) return { pathname: `${API_PREFIX}${pathname.slice(VIEWS_PREFIX.length + 1)}` };
  return undefined;
}
