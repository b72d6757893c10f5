// kubectl keyward usage and review against the real usage API handler (the aggregated
// paths the apiserver proxies), compared with keyward usage and keyward review.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openAnalyticsStore, type AnalyticsStore } from "../../src/analytics/store.ts";
import { createLogger } from "../../src/log.ts";
import { DAY, KEYS, NOW, seedRows } from "../support/analytics-seed.ts";
import { ApiAuth } from "../../src/usage/api-auth.ts";
import { FakeReviewer } from "../../src/usage/api-fixtures.test-support.ts";
import { listenUsageApi, type UsageApi } from "../../src/usage/api.ts";
import { VIEWS_PREFIX } from "../../src/api/usage-group.ts";
import { reviewJson, reviewMarkdown } from "../../src/cli/review-report.ts";
import { usageReport } from "../../src/cli/usage.ts";
import { parseCommandLine } from "../../src/cli/kubectl/flags.ts";
import { reviewThroughApi, usageRequest, usageThroughApi } from "../../src/cli/kubectl/usage.ts";

let store: AnalyticsStore;
let api: UsageApi;
const asked: string[] = [];

/** A GET of the usage API's aggregated path, as the apiserver would proxy it, for tenant A. */
async function get<T>(view: string, query: Record<string, string | undefined>): Promise<T> {
  const q = new URLSearchParams(Object.entries(query).filter((e): e is [string, string] => e[1] !== undefined));
  const path = `${VIEWS_PREFIX}/${view}?${q.toString()}`;
  asked.push(path);
  const res = await fetch(`http://127.0.0.1:${api.port}${path}`, { headers: { authorization: "Bearer tok-a" } });
  const body = (await res.json()) as T & { error?: string };
  if (!res.ok) throw new Error(body.error);
  return body;
}

beforeAll(async () => {
  const log = createLogger({ sink: () => {} });
  store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW }, log);
  await store.upsertKeys(KEYS);
  await store.writeRequests(seedRows());
  const reviewer = new FakeReviewer({ "tok-a": { username: "tenant-a" } }, { "tenant-a": ["team-a"] });
  api = await listenUsageApi({ address: "127.0.0.1:0", queries: store.queries, auth: new ApiAuth(reviewer, { audiences: [], cacheTtlMs: 0 }), log, now: () => NOW });
});

afterAll(async () => {
  await api.stop();
  await store.close();
});

const since = new Date(NOW - 40 * DAY).toISOString();
const until = new Date(NOW).toISOString();

describe("kubectl keyward usage", () => {
  it("prints, through the usage API, exactly what keyward usage prints from the store, in every view and format", async () => {
    const lines: [string, ...string[]][] = [
      ["usage"],
      ["usage", "keys", "--limit", "1"],
      ["usage", "keys", "--owner", "alice", "--selector", "tier=gold"],
      ["usage", "timeline", "--key", "team-a/checkout", "--by", "day"],
      ["usage", "timeline", "--key", "kw_chk00001"],
      ["usage", "status"],
      ["usage", "endpoints", "--by", "path"],
      ["usage", "countries"],
      ["usage", "networks", "--limit", "2"],
    ];
    for (const line of lines) {
      for (const output of ["table", "json", "csv"]) {
        const parsed = parseCommandLine([...line, "--since", since, "--until", until, "-o", output]);
        const request = usageRequest(parsed.name ?? "", parsed.flags, NOW);
        const viaApi = await usageThroughApi(get, request, "team-a");
        const fromStore = await usageReport(store.queries, { ...request, filter: { ...request.filter, namespaces: ["team-a"] } });
        expect(viaApi, `${line.join(" ")} -o ${output}`).toBe(fromStore);
        expect(viaApi).not.toBe("no requests on record for this filter\n");
      }
    }
    expect(asked.every((p) => p.startsWith("/apis/usage.keyward.dev/v1alpha1/views/"))).toBe(true);
    expect(asked.some((p) => p.includes("/views/status-codes?"))).toBe(true);
  });

  it("asks for the namespace given, or for none with --all-namespaces", async () => {
    asked.length = 0;
    const request = usageRequest("", parseCommandLine(["usage", "-A"]).flags, NOW);
    await usageThroughApi(get, request, undefined);
    await usageThroughApi(get, request, "team-a");
    expect(asked[0]).not.toContain("namespace=");
    expect(asked[1]).toContain("namespace=team-a");
  });

  it("takes usage's flags only, at most one VIEW, and not -n with -A", () => {
    expect(() => parseCommandLine(["usage", "keys", "extra"])).toThrow(/one VIEW at most/);
    expect(() => parseCommandLine(["usage", "--owner", "a", "--grace", "1h"])).toThrow(/usage takes no --grace/);
    expect(() => parseCommandLine(["review", "--since", "7d"])).toThrow(/review takes no --since/);
    expect(() => parseCommandLine(["usage", "-n", "a", "-A"])).toThrow(/not both/);
    expect(parseCommandLine(["usage"]).name).toBe("");
    expect(() => usageRequest("weekly", {}, NOW)).toThrow(/--view="weekly": one of keys, timeline/);
  });
});

describe("kubectl keyward review", () => {
  it("renders the review view's answer as keyward review does, markdown or JSON", async () => {
    const review: Parameters<typeof reviewMarkdown>[0] = {
      generatedAt: new Date(NOW).toISOString(),
      source: "cluster",
      notChecked: [],
      options: { olderThanDays: 90, expiringWithinDays: 30, ownerLabel: "owner", scopeWindowDays: 30 },
      keys: 2,
      unused90: [{ namespace: "team-a", name: "search", owner: "bob", idleDays: 120 }],
      unused30: [],
      unusedScopes: [],
      neverRotated: [],
      olderThan: [],
      expiringSoon: [],
      withoutOwner: [{ namespace: "team-a", name: "search", owner: "bob", labels: { tier: "silver" } }],
    };
    const queries: Record<string, string | undefined>[] = [];
    const fake = <T,>(view: string, query: Record<string, string | undefined>): Promise<T> => {
      expect(view).toBe("review");
      queries.push(query);
      return Promise.resolve({ item: review } as T);
    };
    expect(await reviewThroughApi(fake, { owner: "alice" }, "team-a")).toBe(reviewMarkdown(review));
    expect(await reviewThroughApi(fake, { output: "json" }, undefined)).toBe(reviewJson(review));
    expect(queries).toEqual([
      { namespace: "team-a", owner: "alice", selector: undefined },
      { namespace: undefined, owner: undefined, selector: undefined },
    ]);
  });
});
