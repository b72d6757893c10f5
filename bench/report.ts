// The shape of bench/results/latest.json and its markdown rendering (latest.md,
// copied into docs/benchmarks.md).
import type { OperatorResult, RevocationResult } from "./apiserver.ts";
import { nullReference, type CheckResult } from "./check.ts";
import type { IndexPoint } from "./index-scale.ts";
import type { Machine } from "./lib/machine.ts";
import type { ProfileSummary } from "./profile.ts";
import type { GcRun } from "./gc-pauses.ts";
import type { FloorRun } from "./latency-floor.ts";
import type { CidrBenchResult } from "./cidr.ts";
import type { DecodeResult } from "./decode.ts";
import type { InterleavedResult } from "./interleaved.ts";
import { floodTable, type FloodRow } from "./floods.ts";
import { limitsTables, type DenyCacheRow, type LimitsRow } from "./limits.ts";
import { envoyTables } from "./envoy-report.ts";
import type { EnvoyBenchResult } from "./envoy.ts";
import { limitsGrpcTable, type GrpcLimitsRow } from "./limits-grpc.ts";
import { startupTables, type StartupSection } from "./startup.ts";
import { analyticsTables, type AnalyticsSection } from "./analytics-report.ts";
import { consoleTable, type ConsoleBenchResult } from "./console.ts";

interface Stamp {
  at: string;
  loadAverage: string;
}

export interface Results {
  updatedAt?: string;
  machine?: Machine;
  ghzCommand?: string;
  load?: Record<string, number>;
  sections: {
    index?: Stamp & { command: string; points: IndexPoint[] };
    check?: Stamp & { finishedLoadAverage: string; command: string; results: CheckResult[] };
    watchCheck?: Stamp & { seedSeconds: number; totalSeconds: number; result: CheckResult };
    revocation?: Stamp & { result: RevocationResult };
    operator?: { results: (Stamp & OperatorResult)[] };
    profile?: Stamp & { command: string; summary: ProfileSummary };
    gc?: Stamp & { command: string; runs: GcRun[] };
    floor?: Stamp & { command: string; runs: FloorRun[] };
    interleaved?: Stamp & { command: string; rps: number; results: InterleavedResult[] };
    micro?: Stamp & { command: string; result: DecodeResult };
    cidr?: Stamp & { command: string; result: CidrBenchResult };
    floods?: Stamp & { command: string; rows: FloodRow[] };
    limits?: Stamp & { command: string; rows: LimitsRow[]; denyCache: DenyCacheRow[] };
    envoy?: Stamp & EnvoyBenchResult & { finishedLoadAverage: string; command: string };
    limitsGrpc?: Stamp & { command: string; keys: number; rows: GrpcLimitsRow[] };
    startup?: Stamp & StartupSection;
    analytics?: AnalyticsSection;
    console?: Stamp & ConsoleBenchResult & { command: string };
  };
}

const f1 = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(1));
const f2 = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(2));
const int = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? "–" : Math.round(x).toLocaleString("en-US"));
const keysLabel = (n: number): string => (n >= 1e6 ? `${n / 1e6}M` : n >= 1000 ? `${n / 1000}k` : String(n));

function checkTable(rows: CheckResult[], nullRef?: CheckResult): string[] {
  const out = [
    "| server | keys | feed | server cpus | max RPS | server CPU at max | RPS per server core | ratio to null (RPS / per core) | p50 / p99 / p99.9 at 50% (ms) | p99 of each 50% run (ms) | p50 / p99 / p99.9 at 90% (ms) | errors | other load before runs |",
    "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | --- |",
  ];
  const perCoreOf = (r: CheckResult): number => {
    const best = r.maxRuns.reduce((a, b) => (b.rps > a.rps ? b : a));
    return best.serverCpu ? best.rps / best.serverCpu : NaN;
  };
  const nullRow = nullReference(rows) ?? nullRef;
  for (const r of rows) {
    const best = r.maxRuns.reduce((a, b) => (b.rps > a.rps ? b : a));
    const perCore = best.serverCpu ? best.rps / best.serverCpu : NaN;
    const at50Runs = r.at50Runs ?? [r.at50];
    const errs = r.maxRuns.reduce((n, x) => n + x.errors, 0) + at50Runs.reduce((n, x) => n + x.errors, 0) + r.at90.errors;
    out.push(
      `| ${r.name} | ${r.feed === "none" ? "–" : keysLabel(r.keys)} | ${r.feed} | ${r.serverCpus} | ${int(r.maxRps)} | ${f2(best.serverCpu)} | ${int(perCore)} | ${r.ratioToNull === undefined ? "–" : f2(r.ratioToNull)} / ${nullRow ? f2(perCore / perCoreOf(nullRow)) : "–"} | ${f2(r.at50.p50Ms)} / ${f2(r.at50.p99Ms)} / ${f2(r.at50.p999Ms)} | ${at50Runs.map((x) => f2(x.p99Ms)).join(", ")} | ${f2(r.at90.p50Ms)} / ${f2(r.at90.p99Ms)} / ${f2(r.at90.p999Ms)} | ${errs} | ${(r.busyBefore ?? []).map((b) => `${Math.round(b * 100)}%`).join(" ")} |`,
    );
  }
  return out;
}

export function renderMarkdown(r: Results): string {
  const m = r.machine;
  const s = r.sections;
  const out: string[] = ["# keyward benchmark results", ""];
  out.push(`Updated ${r.updatedAt ?? "–"}. Machine: ${m ? `${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, ${m.kernel}, ${m.ghz ?? "ghz ?"}` : "–"}.`, "");
  if (s.check) {
    out.push(`## Check path (ghz, \`${s.check.command}\`)`, "");
    out.push(`Run at ${s.check.at}; load average before ${s.check.loadAverage}, after ${s.check.finishedLoadAverage}.`, "");
    out.push(...checkTable(s.check.results), "");
    out.push("Decisions the servers counted (the request mix as it arrived):", "");
    for (const x of s.check.results) {
      const w = x.perWorker && x.perWorker.length > 1 ? `, per worker ${x.perWorker.join(" / ")}` : "";
      out.push(`- ${x.name}: ${JSON.stringify(x.decisions)}${w}, server RSS ${x.serverRssMiB} MiB`);
    }
    out.push("");
  }
  if (s.watchCheck) {
    out.push("## Check path, index fed by the real apiserver watch", "");
    out.push(`Seeding took ${s.watchCheck.seedSeconds} s; run at ${s.watchCheck.at} (load average ${s.watchCheck.loadAverage}).`, "");
    out.push(...checkTable([s.watchCheck.result], nullReference(s.check?.results ?? [])), "");
    out.push(`- decisions: ${JSON.stringify(s.watchCheck.result.decisions)}, server RSS ${s.watchCheck.result.serverRssMiB} MiB`, "");
  }
  if (s.micro) {
    const x = s.micro.result;
    out.push(`## One request, in a loop (\`${s.micro.command}\`)`, "");
    out.push("| step | ns per request |", "| --- | ---: |");
    out.push(`| decode CheckRequest, proto-loader | ${int(x.protoLoaderNs)} |`);
    out.push(`| decode CheckRequest, keyward (src/authz/decode.ts) | ${int(x.decoderNs)} |`);
    if (x.lazyDecoderNs !== undefined) out.push(`| decode CheckRequest, keyward, headers left as byte ranges, then the key and X-Forwarded-For looked up | ${int(x.lazyDecoderNs)} |`);
    out.push(`| sha256 hex, createHash().update().digest() | ${int(x.createHashNs)} |`);
    out.push(`| sha256 hex, crypto.hash() one-shot (keyward) | ${int(x.oneShotHashNs)} |`);
    out.push(`| CheckResponse of a decision, rendered and encoded | ${int(x.encodeNs)} |`);
    out.push(`| CheckResponse of a decision, from keyward's encoded-response cache | ${int(x.cachedAnswerNs)} |`);
    out.push(`| a denial's log line, rendered whole (Logger.info) | ${int(x.logLineNs)} |`);
    out.push(`| a denial's log line, from its prepared fixed part (keyward) | ${int(x.preparedLogLineNs)} |`, "");
    out.push(`keyward's decoder gave the same CheckInput as proto-loader for all ${x.requests} bench requests, and ${x.cacheCompared} answers from keyward's encoded-response cache were byte-identical to fresh ones.`, "");
  }
  if (s.cidr) {
    out.push(`## Source-address matching, one address in a loop (\`${s.cidr.command}\`)`, "");
    out.push(`Run at ${s.cidr.at} (load average ${s.cidr.loadAverage}), over ${s.cidr.result.addresses} addresses.`, "");
    out.push("| allowedSources entries | keyward (src/index/cidr.ts), ns | net.BlockList, ns |", "| ---: | ---: | ---: |");
    for (const r of s.cidr.result.rows) out.push(`| ${r.entries} | ${f1(r.keywardNs)} | ${f1(r.blockListNs)} |`);
    out.push("");
  }
  if (s.floor) {
    out.push(`## Latency against ghz's worker count, one fixed rate (\`${s.floor.command}\`)`, "");
    out.push(`Run at ${s.floor.at} (load average ${s.floor.loadAverage}).`, "");
    out.push("| server | ghz workers | RPS | p50 / p99 / p99.9 (ms) | max (ms) |", "| --- | ---: | ---: | --- | ---: |");
    for (const f of s.floor.runs) out.push(`| ${f.server} | ${f.workers} | ${int(f.load.rps)} | ${f2(f.load.p50Ms)} / ${f2(f.load.p99Ms)} / ${f2(f.load.p999Ms)} | ${f1(f.load.maxMs)} |`);
    out.push("");
  }
  if (s.interleaved) {
    const x = s.interleaved;
    out.push(`## Servers taking turns at one fixed rate (\`${x.command}\`)`, "");
    out.push(`Run at ${x.at} (load average ${x.loadAverage}); each round runs every server once, for the same drift of the machine.`, "");
    out.push("| server | RPS held | p99 of each round (ms) | median p99 (ms) | p50 / p99.9 of that round (ms) |", "| --- | ---: | --- | ---: | --- |");
    for (const r of x.results) {
      const held = Math.min(...r.runs.map((l) => l.rps));
      out.push(`| ${r.server} | ${int(held)} of ${int(x.rps)} | ${r.runs.map((l) => f2(l.p99Ms)).join(", ")} | ${f2(r.median.p99Ms)} | ${f2(r.median.p50Ms)} / ${f2(r.median.p999Ms)} |`);
    }
    out.push("");
  }
  if (s.gc) {
    out.push(`## GC pauses under a fixed load (\`${s.gc.command}\`)`, "");
    out.push("| gRPC transport | node flags | RPS | p50 / p99 / p99.9 (ms) | scavenges: count, median / max pause (ms), total (ms) | mark-compacts | allocated per call (B) |", "| --- | --- | ---: | --- | --- | --- | ---: |");
    for (const g of s.gc.runs) {
      const sc = g.pauses.Scavenge;
      const mc = g.pauses["Mark-Compact"];
      out.push(
        `| ${g.transport} | ${g.nodeFlags.join(" ") || "(V8 defaults)"} | ${int(g.load.rps)} | ${f2(g.load.p50Ms)} / ${f2(g.load.p99Ms)} / ${f2(g.load.p999Ms)} | ${sc ? `${sc.count}, ${f2(sc.medianMs)} / ${f2(sc.maxMs)}, ${int(sc.totalMs)}` : "–"} | ${mc ? `${mc.count}, max ${f1(mc.maxMs)} ms` : "–"} | ${g.youngBytesPerCall !== undefined ? int(g.youngBytesPerCall) : "–"} |`,
      );
    }
    out.push("");
  }
  if (s.index) {
    out.push(`## Key index (\`${s.index.command}\`)`, "");
    out.push("| keys | build (ms) | heap (MiB) | bytes per key | lookup (ns) | miss (ns) | sha256 + lookup (ns) |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const p of s.index.points) {
      out.push(`| ${keysLabel(p.keys)} | ${int(p.buildMs)} | ${f1(p.heapBytes / 2 ** 20)} | ${int(p.bytesPerKey)} | ${f1(p.lookupNs)} | ${f1(p.missNs)} | ${int(p.hashAndLookupNs)} |`);
    }
    out.push("");
  }
  if (s.revocation) {
    const v = s.revocation.result;
    out.push("## Revocation lag (real apiserver; write to first denied Check)", "");
    out.push("| changes | by mode | keys in index | p50 (ms) | p99 (ms) | max (ms) | over 1 s |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    out.push(`| ${v.changes} | ${Object.entries(v.byMode).map(([k, n]) => `${k} ${n}`).join(", ")} | ${int(v.indexKeysDuringRun)} | ${f1(v.p50Ms)} | ${f1(v.p99Ms)} | ${f1(v.maxMs)} | ${v.over1s} |`, "");
  }
  if (s.operator) {
    out.push("## Operator throughput (real apiserver)", "");
    out.push("| ApiKeys | kube-qps / burst / workers | applied in (s) | all Ready after (s) | Ready per second | apiserver requests | per key | by verb |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for (const o of s.operator.results) {
      out.push(
        `| ${int(o.keys)} | ${o.settings.kubeQps} / ${o.settings.kubeBurst} / ${o.settings.workers} | ${f1(o.applySeconds)} | ${f1(o.allReadySeconds)} | ${f1(o.keys / o.allReadySeconds)} | ${int(o.operatorRequests)} | ${f2(o.requestsPerKey)} | ${Object.entries(o.byVerb).map(([k, n]) => `${k} ${n}`).join(", ")} |`,
      );
    }
    out.push("");
  }
  if (s.profile) {
    const p = s.profile.summary;
    out.push(`## CPU profile of the check path (\`${s.profile.command}\`)`, "");
    out.push(`${keysLabel(p.keys)} keys, ${int(p.load.rps)} RPS under the profiler, ${int(p.sampledMs)} ms sampled. Shares of busy (non-idle) CPU time.`, "");
    out.push("| self time, by category | % |", "| --- | ---: |");
    for (const c of p.categories) out.push(`| ${c.category} | ${f1(c.percent)} |`);
    out.push("", "| inclusive time of a step | % |", "| --- | ---: |");
    for (const c of p.inclusive) out.push(`| ${c.what} | ${f1(c.percent)} |`);
    out.push("", "| top functions (self) | where | % |", "| --- | --- | ---: |");
    for (const c of p.top.slice(0, 15)) out.push(`| \`${c.fn}\` | ${c.where} | ${f1(c.percent)} |`);
    out.push("");
  }
  if (s.floods) {
    out.push(`## HTTP/2 floods (\`${s.floods.command}\`)`, "");
    out.push(`Run at ${s.floods.at}; load average before ${s.floods.loadAverage}. One attacking connection each (the last row: many), beside a well-behaved client.`, "");
    out.push(...floodTable(s.floods.rows), "");
  }
  if (s.limitsGrpc) {
    out.push(`## Limits store through gRPC (\`${s.limitsGrpc.command}\`)`, "");
    out.push(`Run at ${s.limitsGrpc.at}; load average before ${s.limitsGrpc.loadAverage}. ghz against \`keyward authz\` over ${int(s.limitsGrpc.keys)} keys with limits; medians of 3 runs.`, "");
    out.push(...limitsGrpcTable(s.limitsGrpc.rows), "");
  }
  if (s.limits) {
    out.push(`## Limits store (\`${s.limits.command}\`)`, "");
    out.push(`Run at ${s.limits.at}; load average before ${s.limits.loadAverage}.`, "");
    out.push(...limitsTables(s.limits.rows, s.limits.denyCache), "");
  }
  if (s.envoy) {
    out.push(`## Through Envoy (vegeta, \`${s.envoy.command}\`)`, "");
    out.push(`Run at ${s.envoy.at}; load average before ${s.envoy.loadAverage}, after ${s.envoy.finishedLoadAverage}.`, "");
    out.push(...envoyTables(s.envoy), "");
  }
  if (s.startup) {
    out.push(`## Start-up and idle memory per role (\`${s.startup.command}\`)`, "");
    out.push(`Run at ${s.startup.at}; load average before ${s.startup.loadAverage}.`, "");
    out.push(...startupTables(s.startup), "");
  }
  if (s.analytics) {
    out.push(`## Analytics store (\`${s.analytics.command}\`)`, "");
    out.push(...analyticsTables(s.analytics));
  }
  if (s.console) {
    out.push(`## The console in headless Chromium (\`${s.console.command}\`)`, "");
    out.push(`Run at ${s.console.at}; load average before ${s.console.loadAverage}.`, "");
    out.push(...consoleTable(s.console), "");
  }
  return out.join("\n") + "\n";
}
