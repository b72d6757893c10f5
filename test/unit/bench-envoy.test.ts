// `make bench`'s Envoy section: the configurations it runs are deploy/envoy/ext-authz.yaml with
// only the guard changed, and its tables take the medians and differences they claim to.
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { GcTrace, envoyConfig, halfRateFor, intervalQuantiles, roundOrder, scenarioFor, vegetaTargets, type EnvoyScenarioResult, type VegetaRun } from "../../bench/envoy.ts";
import { envoyTables, pointOf } from "../../bench/envoy-report.ts";
import { keyFor } from "../../bench/lib/fixture.ts";
import { keywardAnswer } from "../../bench/lib/answer.ts";
import type * as grpc from "@grpc/grpc-js";
import { AUTHZ_SERVICE, loadProtos, type CheckResponseMessage } from "../../src/authz/proto.ts";

interface Filter {
  name: string;
  typed_config: Record<string, unknown>;
}
interface Config {
  static_resources: { listeners: { filter_chains: { filters: { typed_config: { http_filters: Filter[]; access_log?: unknown } }[] }[] }[]; clusters: { name: string }[] };
}

const ports = { listen: 10001, admin: 10002, app: 10003, authz: 10004 };
const render = (id: string): Config => parse(envoyConfig(scenarioFor(id), ports)) as Config;
const hcm = (c: Config) => c.static_resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config;
const filterNames = (c: Config): string[] => hcm(c).http_filters.map((f) => f.name);

describe("bench/envoy.ts configurations", () => {
  it("keeps the shipped ext_authz filter for the null server and keyward, without the access logs", () => {
    for (const id of ["go-null", "keyward-10k"]) {
      const c = render(id);
      expect(filterNames(c)).toEqual(["envoy.filters.http.header_mutation", "envoy.filters.http.ext_authz", "envoy.filters.http.router"]);
      const authz = hcm(c).http_filters[1]!.typed_config;
      expect(authz.failure_mode_allow).toBe(false);
      expect(authz.grpc_service).toEqual({ envoy_grpc: { cluster_name: "keyward-authz" }, timeout: "0.25s" });
      expect(hcm(c).access_log).toBeUndefined();
      expect(c.static_resources.clusters.map((x) => x.name)).toEqual(["app", "keyward-authz"]);
      expect(JSON.stringify(c)).toContain(`"port_value":${ports.authz}`);
    }
  });

  it("drops the ext_authz filter and its cluster for Envoy alone", () => {
    const c = render("none");
    expect(filterNames(c)).toEqual(["envoy.filters.http.header_mutation", "envoy.filters.http.router"]);
    expect(c.static_resources.clusters.map((x) => x.name)).toEqual(["app"]);
  });

  it("puts api_key_auth with every bench key in the ext_authz filter's place", () => {
    const c = render("native-1k");
    expect(filterNames(c)).toEqual(["envoy.filters.http.header_mutation", "envoy.filters.http.api_key_auth", "envoy.filters.http.router"]);
    const cfg = hcm(c).http_filters[1]!.typed_config as { credentials: { key: string; client: string }[]; key_sources: unknown[] };
    expect(cfg.credentials).toHaveLength(1000);
    expect(cfg.credentials[999]).toEqual({ key: keyFor(999), client: "k-999" });
    expect(cfg.key_sources).toEqual([{ header: "x-api-key" }]);
  });

  it("gives the null servers on keyward's HTTP/2 the shipped ext_authz filter too", () => {
    for (const id of ["null-keyward", "null-answer"]) expect(filterNames(render(id))).toContain("envoy.filters.http.ext_authz");
  });

  it("has the null server answer with keyward's own answer to an allowed request (--answer keyward)", () => {
    const svc = loadProtos()[AUTHZ_SERVICE] as grpc.ServiceDefinition;
    const m = (svc.Check!.responseDeserialize as (b: Buffer) => CheckResponseMessage)(keywardAnswer());
    expect(m.status.code).toBe(0);
    expect(m.ok_response?.headers.map((h) => h.header.key)).toEqual(["x-keyward-key-id", "x-keyward-owner"]);
    expect(m.ok_response?.headers_to_remove).toContain("x-api-key");
    expect(Object.keys(m.dynamic_metadata?.fields ?? {})).toEqual(expect.arrayContaining(["key_id", "owner", "decision", "reason", "scopes"]));
  });

  it("rejects an unknown scenario", () => {
    expect(() => scenarioFor("keyward")).toThrow(/unknown scenario/);
    expect(scenarioFor("native-10")).toEqual({ id: "native-10", guard: "native", keys: 10 });
  });

  it("sends only keys the index holds, in vegeta's targets format", () => {
    const lines = vegetaTargets(8080, 3, 50).split("\n");
    const keys = lines.filter((l) => l.startsWith("X-Api-Key: ")).map((l) => l.slice("X-Api-Key: ".length));
    expect(keys).toHaveLength(50);
    for (const k of keys) expect([keyFor(0), keyFor(1), keyFor(2)]).toContain(k);
    expect(lines[0]).toMatch(/^GET http:\/\/127\.0\.0\.1:8080\/v1\/orders\/\d+$/);
    expect(lines[1]).toBe("Host: api.example.com");
  });

  it("sends every key at least once per pass through the targets, however many keys there are", () => {
    const keysOf = (text: string): string[] => text.split("\n").filter((l) => l.startsWith("X-Api-Key: ")).map((l) => l.slice("X-Api-Key: ".length));
    const many = keysOf(vegetaTargets(8080, 3000));
    expect(many).toHaveLength(3000);
    expect(new Set(many).size).toBe(3000);
    const few = keysOf(vegetaTargets(8080, 10));
    expect(few).toHaveLength(1000);
    expect(new Set(few)).toEqual(new Set(Array.from({ length: 10 }, (_, i) => keyFor(i))));
  });

  it("runs the grpc-go null server first in a round, and every ext_authz guard at half its closed-loop rate", () => {
    const order = roundOrder(["none", "keyward-10", "go-null", "native-10", "null-keyward"].map(scenarioFor)).map((s) => s.id);
    expect(order).toEqual(["go-null", "none", "keyward-10", "native-10", "null-keyward"]);
    for (const id of ["go-null", "null-keyward", "null-answer", "keyward-10", "keyward-10k"]) expect(halfRateFor(scenarioFor(id), 4000)).toBe(2000);
    for (const id of ["none", "native-10k"]) expect(halfRateFor(scenarioFor(id), 4000)).toBeUndefined();
    expect(halfRateFor(scenarioFor("keyward-10k"), undefined)).toBeUndefined();
  });

  it("counts the authorizer's GC pauses from V8's trace lines between start and stop", () => {
    const gc = new GcTrace();
    const line = (kind: string, ms: string): string => `[1:0x1]     7969 ms: ${kind} 21.3 (26.5) -> 17.3 (26.5) MB, pooled: 0 MB, ${ms} / 0.00 ms  (average mu = 0.996, current mu = 0.996) allocation failure; `;
    gc.line(line("Scavenge", "9.00"));
    gc.start();
    gc.line(line("Scavenge", "0.42"));
    gc.line(line("Scavenge", "0.30"));
    gc.line(line("Mark-Compact", "3.08"));
    gc.line("READY 1234");
    expect(gc.stop()).toEqual({ Scavenge: { count: 2, totalMs: 0.72, maxMs: 0.42 }, "Mark-Compact": { count: 1, totalMs: 3.08, maxMs: 3.08 } });
    gc.line(line("Scavenge", "5"));
    expect(gc.stop()).toEqual({});
  });
});

describe("bench/envoy.ts figures", () => {
  it("reads the interval p50 and p99 of an Envoy histogram", () => {
    const json = {
      stats: [
        { name: "x", value: 1 },
        {
          histograms: {
            supported_quantiles: [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100],
            computed_quantiles: [{ name: "cluster.keyward-authz.upstream_rq_time", values: [0, 0.1, 0.52, 0.7, 0.9, 1, 1.95, 2, 3, 4].map((v) => ({ interval: v, cumulative: v * 10 })) }],
          },
        },
      ],
    };
    expect(intervalQuantiles(json as never, "cluster.keyward-authz.upstream_rq_time")).toEqual({ p50: 0.52, p99: 1.95 });
    expect(intervalQuantiles(json as never, "cluster.other.upstream_rq_time")).toBeUndefined();
  });

  const run = (p50Ms: number, p99Ms: number, cpu = 100): VegetaRun => ({
    rate: 300,
    rps: 300,
    count: 3000,
    success: 1,
    p50Ms,
    p90Ms: p99Ms,
    p99Ms,
    maxMs: p99Ms,
    cpuUsPerRequest: cpu,
    envoyCpuUsPerRequest: cpu / 2,
    statusCodes: { "200": 3000 },
    loadAverage: "1 1 1",
  });

  it("takes each figure's median over the rounds on its own", () => {
    const p = pointOf([run(1, 9, 300), run(3, 2, 100), run(2, 5, 200)]);
    expect([p.p50Ms, p.p99Ms, p.cpuUsPerRequest]).toEqual([2, 5, 200]);
  });

  it("reports latency added over Envoy alone, and keyward's p99 over the null server's", () => {
    const sc = (id: string, fixed: VegetaRun[], half: VegetaRun[]): EnvoyScenarioResult => ({ ...scenarioFor(id), name: id, maxRuns: [run(1, 1)], maxRps: 1000, fixedRuns: fixed, halfRuns: half });
    const md = envoyTables({
      fixedRate: 300,
      seconds: 10,
      runsPerPoint: 1,
      vegeta: "vegeta v12.13.0",
      scenarios: [sc("none", [run(0.5, 1.5)], [run(0.5, 1)]), sc("go-null", [run(1, 2)], [run(1, 2)]), sc("keyward-10", [run(1.25, 3)], [run(1.5, 2.25)])],
    }).join("\n");
    expect(md).toContain("| keyward-10 | 300 / 300 | 1.25 / 3.00 | +0.75 / +1.50 |");
    expect(md).toContain("| keyward-10 | 300 / 300 | 1.50 / 2.25 | +0.50 / +0.25 |");
    expect(md).toContain("| go-null | 300 / 300 | 1.00 / 2.00 | +0.50 / +0.50 |");
    expect(md).toContain("every ext_authz guard at half the grpc-go null server's closed-loop rate");
  });

  it("reports the spread of the rounds' p99 and how busy the shared core was", () => {
    const busy = (p99: number, coreBusy: number): VegetaRun => ({ ...run(1, p99), coreBusy });
    const p = pointOf([busy(2, 0.5), busy(19, 0.9), busy(3, 0.6)]);
    expect([p.p99Ms, p.coreBusy]).toEqual([3, 0.6]);
    const md = envoyTables({
      fixedRate: 300,
      seconds: 10,
      runsPerPoint: 3,
      vegeta: "vegeta v12.13.0",
      scenarios: [{ ...scenarioFor("keyward-10k"), name: "k", maxRuns: [run(1, 1)], maxRps: 1000, fixedRuns: [busy(2, 0.5), busy(19, 0.9), busy(3, 0.6)], halfRuns: [run(1, 2)] }],
    }).join("\n");
    expect(md).toContain("| 2.00, 19.00, 3.00 | 17.00 | 60% |");
    // Results without the busy share (older runs) read as unknown.
    expect(md).toContain("| 2.00 | 0.00 | – |");
  });
});
