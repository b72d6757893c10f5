// `keyward review [flags] [settings]`: reads the analytics store named by the
// --analytics-* settings and the ApiKeys and ApiKeyPolicies of the cluster the
// kubeconfig names, and prints the access review (src/analytics/review.ts).
import { APIKEY_PLURAL, APIKEYPOLICY_PLURAL, API_VERSION, type ApiKey, type ApiKeyPolicy } from "../api/types.ts";
import { loadConfig, type Config } from "../config/config.ts";
import { KeywardError } from "../errors.ts";
import { loadKubeConfig } from "../k8s/client.ts";
import { KubeRest } from "../k8s/rest.ts";
import { createLogger, type Level } from "../log.ts";
import { parseSelector } from "../analytics/selector.ts";
import { parseChoice, parseCount, splitFlags, type FlagKind } from "./args.ts";
import { computeReview, REVIEW_DEFAULTS, type LiveState } from "../analytics/review.ts";
import { reviewJson, reviewMarkdown } from "./review-report.ts";
import { openReportStore } from "./store.ts";

export const REVIEW_FLAGS: Readonly<Record<string, FlagKind>> = {
  namespace: "string",
  owner: "string",
  selector: "string",
  "older-than": "string",
  "expiring-within": "string",
  "owner-label": "string",
  "cluster-timeout": "string",
  offline: "bool",
  output: "string",
};

/** `--older-than 180d`: whole days (a bare number is days). */
function parseDays(flag: string, text: string): number {
  return parseCount(flag, text.endsWith("d") ? text.slice(0, -1) : text);
}

/** The live ApiKeys and policies, or why they could not be read. */
async function readCluster(config: Config, namespaces: readonly string[] | undefined, timeoutMs: number): Promise<LiveState> {
  let rest: KubeRest;
  try {
    rest = new KubeRest(loadKubeConfig(config.kubeconfig || undefined), { qps: 0, timeoutMs });
  } catch (err) {
    return { unreachable: err instanceof Error ? err.message : String(err) };
  }
  const list = async <T>(plural: string, in_: readonly string[] | undefined): Promise<T[]> => {
    const paths = in_ ? in_.map((ns) => `/apis/${API_VERSION}/namespaces/${ns}/${plural}`) : [`/apis/${API_VERSION}/${plural}`];
    const out: T[] = [];
    for (const p of paths) out.push(...(await rest.request<{ items: T[] }>("GET", p)).items);
    return out;
  };
  try {
    const keys = await list<ApiKey>(APIKEY_PLURAL, namespaces);
    // Every namespace's policies (a rule may admit keys of other namespaces); those of the keys' namespaces when the reader may not list them all.
    const policies = await list<ApiKeyPolicy>(APIKEYPOLICY_PLURAL, undefined).catch((err: unknown) => (namespaces ? list<ApiKeyPolicy>(APIKEYPOLICY_PLURAL, namespaces) : Promise.reject(err instanceof Error ? err : new Error(String(err)))));
    return { keys, policies };
  } catch (err) {
    return { unreachable: err instanceof Error ? err.message : String(err) };
  } finally {
    rest.close();
  }
}

export async function reviewCommand(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, out: (s: string) => void, now: () => number = Date.now): Promise<number> {
  const { values, words, rest } = splitFlags("review", argv, REVIEW_FLAGS);
  if (words.length) throw new KeywardError("ConfigInvalid", `keyward review: unexpected ${words.join(" ")}`);
  const { config } = loadConfig(rest, env);
  const output = parseChoice("output", values.get("output") ?? "markdown", ["markdown", "json"]);
  const olderThanDays = parseDays("older-than", values.get("older-than") ?? String(REVIEW_DEFAULTS.olderThanDays));
  const expiringWithinDays = parseDays("expiring-within", values.get("expiring-within") ?? String(REVIEW_DEFAULTS.expiringWithinDays));
  const timeoutMs = parseCount("cluster-timeout", (values.get("cluster-timeout") ?? "10s").replace(/s$/, "")) * 1000;
  const ns = values.get("namespace")?.split(",").map((s) => s.trim()).filter(Boolean);
  const selector = values.get("selector");
  if (selector !== undefined) parseSelector(selector);
  const owner = values.get("owner");
  const filter = { ...(ns ? { namespaces: ns } : {}), ...(owner !== undefined ? { owner } : {}), ...(selector !== undefined ? { selector } : {}) };
  const store = await openReportStore("review", config, createLogger({ level: config.logLevel as Level }), now);
  try {
    const live: LiveState = values.has("offline") ? { unreachable: "--offline" } : await readCluster(config, ns, timeoutMs);
    const review = await computeReview(store.queries, live, filter, { now: now(), olderThanDays, expiringWithinDays, ownerLabel: values.get("owner-label") ?? REVIEW_DEFAULTS.ownerLabel, retentionMs: config.analyticsRetention });
    out(output === "json" ? reviewJson(review) : reviewMarkdown(review));
  } finally {
    await store.close();
  }
  return 0;
}
