// The Envoy section's tables: medians over the rounds, latency added over Envoy alone, CPU per
// request of Envoy and the authorizer together.
import type { EnvoyBenchResult, EnvoyScenarioResult, VegetaRun } from "./envoy.ts";
import { median } from "./lib/stats.ts";

export interface EnvoyPoint {
  rate: number;
  /** Requests per second completed (below `rate` when vegeta's workers could not keep up). */
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerRequest: number;
  envoyCpuUsPerRequest: number;
  success: number;
  p99s: number[];
  /** Median busy share of the core Envoy and the authorizer share (undefined in results without it). */
  coreBusy: number | undefined;
}

/** The medians of a point's runs, each figure on its own. */
export function pointOf(runs: readonly VegetaRun[]): EnvoyPoint {
  const m = (f: (r: VegetaRun) => number): number => median(runs.map(f));
  return {
    rate: m((r) => r.rate),
    rps: m((r) => r.rps),
    p50Ms: m((r) => r.p50Ms),
    p99Ms: m((r) => r.p99Ms),
    cpuUsPerRequest: m((r) => r.cpuUsPerRequest),
    envoyCpuUsPerRequest: m((r) => r.envoyCpuUsPerRequest),
    success: Math.min(...runs.map((r) => r.success)),
    p99s: runs.map((r) => r.p99Ms),
    coreBusy: runs.every((r) => r.coreBusy !== undefined) ? m((r) => r.coreBusy ?? 0) : undefined,
  };
}

const f2 = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(2));
const signed = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? "–" : `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(2)}`);
const int = (x: number): string => Math.round(x).toLocaleString("en-US");

function table(rows: readonly EnvoyScenarioResult[], pick: (s: EnvoyScenarioResult) => VegetaRun[], reference: (s: EnvoyScenarioResult) => EnvoyScenarioResult | undefined, referenceLabel: string): string[] {
  const out = [
    `| guard | rate asked / done (rps) | p50 / p99 (ms) | ${referenceLabel} p50 / p99 (ms) | CPU per request, Envoy + authorizer (Envoy alone) µs | 2xx | p99 of each round (ms) | p99 spread, max − min (ms) | their core busy |`,
    "| --- | ---: | --- | --- | --- | ---: | --- | ---: | ---: |",
  ];
  for (const s of rows) {
    const runs = pick(s);
    if (runs.length === 0) continue;
    const p = pointOf(runs);
    const refScenario = reference(s);
    const ref = refScenario && refScenario !== s ? pointOf(pick(refScenario)) : undefined;
    out.push(
      `| ${s.name} | ${int(p.rate)} / ${int(p.rps)} | ${f2(p.p50Ms)} / ${f2(p.p99Ms)} | ${ref ? `${signed(p.p50Ms - ref.p50Ms)} / ${signed(p.p99Ms - ref.p99Ms)}` : "–"} | ${int(p.cpuUsPerRequest)} (${int(p.envoyCpuUsPerRequest)}) | ${(p.success * 100).toFixed(1)}% | ${p.p99s.map(f2).join(", ")} | ${f2(Math.max(...p.p99s) - Math.min(...p.p99s))} | ${p.coreBusy === undefined ? "–" : `${Math.round(p.coreBusy * 100)}%`} |`,
    );
  }
  return out;
}

export function envoyTables(r: EnvoyBenchResult): string[] {
  const none = r.scenarios.find((s) => s.guard === "none");
  const floor = r.scenarios.find((s) => s.guard === "go-null");
  const out: string[] = [];
  out.push("| guard | keys | closed-loop RPS, median (each round) |", "| --- | ---: | --- |");
  for (const s of r.scenarios) out.push(`| ${s.name} | ${s.guard === "keyward" || s.guard === "native" ? int(s.keys) : "–"} | ${int(s.maxRps)} (${s.maxRuns.map((x) => int(x.rps)).join(", ")}) |`);
  out.push("", `At a fixed ${int(r.fixedRate)} requests/s (${r.seconds} s a run, medians over ${r.runsPerPoint} rounds), latency added over Envoy alone at the same rate:`, "");
  out.push(...table(r.scenarios, (s) => s.fixedRuns, () => none, "added over Envoy alone"));
  out.push(
    "",
    floor
      ? "At 50% load (every ext_authz guard at half the grpc-go null server's closed-loop rate of the same round, the others at half their own), the p99 beside the null ext_authz server's (the target: keyward within 0.5 ms of it):"
      : "At 50% of each guard's own closed-loop throughput:",
    "",
  );
  out.push(...table(r.scenarios, (s) => s.halfRuns, (s) => (s.guard === "keyward" ? floor : undefined), "over the null ext_authz server"));
  return out;
}
