// The analytics section of bench/results/latest.md (and so of docs/benchmarks.md): the
// store's write rate, size, query and day-drop times (bench/analytics.ts), and the check
// path with analytics on against off (bench/analytics-check.ts).
import type { AnalyticsCheckResult, AnalyticsCheckRow, RunCpu } from "./analytics-check.ts";
import type { StoreBenchResult } from "./analytics.ts";
import type { ThreadVariantResult } from "./analytics-thread.ts";
import type { LoadResult } from "./lib/ghz.ts";

export interface AnalyticsSection {
  at: string;
  loadAverage: string;
  finishedLoadAverage: string;
  command: string;
  store: StoreBenchResult[];
  check?: AnalyticsCheckResult;
  /** The same without a CPU limit, the variants sharing core 1 by equal weights (--pod-cpu 0, ADR 76). */
  checkShared?: AnalyticsCheckResult;
  /** The check thread's CPU per check in process (bench/analytics-thread.ts). */
  thread?: { keys: number; checks: number; rounds: number; variants: ThreadVariantResult[] };
}

const int = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? "–" : Math.round(x).toLocaleString("en-US"));
const ms = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? "–" : x < 10 ? x.toFixed(1) : int(x));
const f2 = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(2));
const rowsLabel = (n: number): string => (n >= 1e6 ? `${n / 1e6}M` : n >= 1000 ? `${n / 1000}k` : String(n));

function storeTable(rows: StoreBenchResult[]): string[] {
  const cols = rows.map((r) => r.backend);
  const line = (what: string, f: (r: StoreBenchResult) => string): string => `| ${what} | ${rows.map(f).join(" | ")} |`;
  const first = rows[0];
  if (!first) return [];
  return [
    `| | ${cols.join(" | ")} |`,
    `| --- | ${cols.map(() => "---:").join(" | ")} |`,
    line(`events per CPU-second, writer + database server (${rowsLabel(first.writeRows)} rows, batches of 1,000)`, (r) => int(r.eventsPerCpuSecond)),
    line("events per CPU-second of the database server alone", (r) => int(r.serverEventsPerCpuSecond)),
    line("events per second, wall clock (one writer)", (r) => int(r.eventsPerSecond)),
    line("bytes per event on disk (rows, indexes, rollups)", (r) => int(r.bytesPerEvent)),
    line(`seeding ${rowsLabel(first.rows)} rows over 30 days, with their rollups (s)`, (r) => ms(r.seedSeconds)),
    line("`keyward usage` top 20 keys, 30 whole days (rollups), ms", (r) => ms(r.topKeysMs)),
    line("top 20 keys, 30 days less 1 ms (per-request rows), ms", (r) => ms(r.topKeysRowsMs)),
    line("one key's hourly timeline, last 7 days (per-request rows), ms", (r) => ms(r.hourlyTimelineMs)),
    line("one key's daily timeline, 30 days (rollups), ms", (r) => ms(r.dailyTimelineMs)),
    line("drop the oldest day, ms", (r) => `${ms(r.dropDayMs)} (${r.backend === "postgres" ? `${r.droppedDay} partition` : `${int(r.droppedDay)} rows`})`),
  ];
}

const signedPct = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined || !(b > 0) ? "–" : `${a >= b ? "+" : ""}${((a / b - 1) * 100).toFixed(1)}%`);

/** Below this share of its core, the check thread was not saturated: the client bound the closed loop. */
export const SATURATED_BUSY = 0.9;

/** Under a CPU limit (--pod-cpu), below this share of CFS periods throttled without analytics, keyward did not run out of its quota. */
export const SATURATED_THROTTLED = 0.9;

/** The median of a per-run figure over a variant's closed loops; undefined where no run has it. */
function runMedian(r: AnalyticsCheckRow, of: (c: RunCpu) => number | undefined): number | undefined {
  const xs = r.cpu.map(of).filter((x): x is number => x !== undefined);
  if (xs.length === 0) return undefined;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** The median share of periods a variant's closed loops were throttled in, with --pod-cpu. */
const throttledShare = (r: AnalyticsCheckRow): number | undefined => runMedian(r, (c) => c.throttledShare);

/** The median of the check loop's utilization over a variant's closed loops. */
const loopBusy = (r: AnalyticsCheckRow): number | undefined => runMedian(r, (c) => c.loopUtilization);

/** The median share of the closed loops' time the check thread waited for a CPU. */
const waiting = (r: AnalyticsCheckRow): number | undefined => runMedian(r, (c) => c.checkThreadWait);

/** The loss of saturated throughput the check path may take with analytics on, against off. */
export const TARGET_LOSS = 0.1;

/** The closed loop at saturation: throughput and latency per variant, against off and against the event alone. */
function saturatedTable(c: AnalyticsCheckResult): string[] {
  const off = c.rows.find((r) => r.variant === "off");
  const events = c.rows.find((r) => r.variant === "events");
  const out = [
    "| analytics | saturated RPS (median) | each round | vs off | vs events | check thread busy (of its core) | core 0 / core 1 busy (everything) | p50 / p99 / p99.9 at saturation (ms) | p99 of each round (ms) | client CPU per call (µs) | check thread CPU per check (µs) | process CPU per check (µs) | writer thread CPU per row (µs) | rows made / written / dropped |",
    "| --- | ---: | --- | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const r of c.rows) {
    const rows = r.rows ? `${int(r.rows.made)} / ${int(r.rows.written)} / ${int(r.rows.dropped)}` : "–";
    out.push(
      `| ${r.variant} | ${int(r.maxRps)} | ${r.maxRuns.map((x) => int(x.rps)).join(", ")} | ${off && r !== off ? signedPct(r.maxRps, off.maxRps) : "–"} | ${events && r !== events && r !== off ? signedPct(r.maxRps, events.maxRps) : "–"} | ${f2(r.checkThreadBusy)}${throttledShare(r) !== undefined ? ` (throttled in ${f2(throttledShare(r))} of periods)` : ""}${loopBusy(r) !== undefined ? ` (loop busy ${f2(loopBusy(r))})` : ""}${waiting(r) !== undefined ? ` (waiting for a CPU ${f2(waiting(r))})` : ""} | ${r.coreBusy?.length ? r.coreBusy.map(f2).join(" / ") : "–"} | ${f2(r.saturated?.p50Ms)} / ${f2(r.saturated?.p99Ms)} / ${f2(r.saturated?.p999Ms)} | ${r.maxRuns.map((x) => f2(x.p99Ms)).join(", ")} | ${f2(r.clientMicrosPerCall)} | ${f2(r.checkThreadMicrosPerCheck)} | ${f2(r.cpuMicrosPerCheck)} | ${f2(r.writerMicrosPerRow)} | ${rows} |`,
    );
  }
  return out;
}

/** Each store variant's saturated throughput against off, read against the target, and whether off saturated the check thread at all. */
function targetLines(c: AnalyticsCheckResult): string[] {
  const off = c.rows.find((r) => r.variant === "off");
  if (!off) return [];
  const events = c.rows.find((r) => r.variant === "events");
  // Under a limit, saturated is keyward throttled; in cgroups without one (--pod-cpu 0) sharing
  // core 1, that core busy; else the check thread's own core busy.
  const limited = c.podCpu !== undefined && c.podCpu > 0;
  const offThrottled = limited ? throttledShare(off) : undefined;
  const sharedCore = off.coreBusy?.[1];
  const saturated = limited
    ? offThrottled !== undefined && offThrottled >= SATURATED_THROTTLED
    : c.podCpu === 0
      ? sharedCore !== undefined && sharedCore >= SATURATED_BUSY
      : off.checkThreadBusy !== undefined && off.checkThreadBusy >= SATURATED_BUSY;
  // keyward makes the usage event for every check whatever its store (status.usage, the metrics):
  // `events` is the nearest the bench comes to keyward with --analytics-store=off, so a store is
  // judged against it when it ran; `off`, no usage event at all, is no configuration of keyward.
  const ref = events ?? off;
  const out: string[] = [];
  if (events) out.push(`- events, the usage event alone (which keyward makes with its store off too): ${signedPct(1 + change(c, events, off), 1)} against off.`);
  for (const r of c.rows) {
    if (r === off || r === events) continue;
    const loss = -change(c, r, ref);
    const vs = events ? `${signedPct(1 + change(c, r, events), 1)} against events (keyward with its store off), ${signedPct(1 + change(c, r, off), 1)} against off` : `${signedPct(1 + change(c, r, off), 1)} against off`;
    const verdict = !saturated ? (limited ? "not judged, keyward not at its CPU limit" : "not judged, the check thread not saturated") : loss <= TARGET_LOSS ? `within the ${TARGET_LOSS * 100}% target` : `over the ${TARGET_LOSS * 100}% target`;
    out.push(`- ${r.variant}: throughput ${vs}: ${verdict}; p99 ${f2(r.saturated?.p99Ms)} ms against off's ${f2(off.saturated?.p99Ms)} ms.`);
  }
  if (c.together) out.push("- Changes are the median of each round's ratio, the variants having run at once.");
  if (!saturated && c.podCpu === 0) out.push(`- Not saturated: with analytics off core 1, which the servers share, was busy ${f2(sharedCore)} (below ${SATURATED_BUSY}), so the clients bound the closed loops.`);
  else if (!saturated && limited)
    out.push(`- Not saturated: with analytics off keyward was throttled in ${f2(offThrottled)} of the CFS periods (below ${SATURATED_THROTTLED}): it did not use its whole ${c.podCpu} CPU, so the client or the machine bound the closed loop.`);
  else if (!saturated)
    out.push(
      `- Not saturated: with analytics off the check thread was busy ${f2(off.checkThreadBusy)} of its core (below ${SATURATED_BUSY})${off.coreBusy?.length ? `; core 0${c.floating ? "" : " (the client's)"} was busy ${f2(off.coreBusy[0])} and core 1 ${f2(off.coreBusy[1])}, counting all that ran there` : ""}. The closed loop was bound by the client's core or by the machine's other work, not by the check path.`,
    );
  return out;
}

/**
 * The change of `r`'s saturated throughput against `ref`'s: with the variants run at once
 * (--together), the median of each round's ratio, whose two runs saw the same machine; else the
 * ratio of the medians.
 */
function change(c: AnalyticsCheckResult, r: AnalyticsCheckRow, ref: AnalyticsCheckRow): number {
  if (c.together && r.maxRuns.length === ref.maxRuns.length && r.maxRuns.length > 0) {
    const ratios = r.maxRuns.map((x, i) => x.rps / (ref.maxRuns[i] as LoadResult).rps).sort((a, b) => a - b);
    const n = ratios.length;
    return (n % 2 ? (ratios[(n - 1) / 2] as number) : ((ratios[n / 2 - 1] as number) + (ratios[n / 2] as number)) / 2) - 1;
  }
  return r.maxRps / ref.maxRps - 1;
}

/** The fixed-rate runs: every variant at one offered rate, the check thread's CPU per check and the latency. */
function rateTable(c: AnalyticsCheckResult): string[] {
  const off = c.rows.find((r) => r.variant === "off");
  const events = c.rows.find((r) => r.variant === "events");
  /** The check thread's CPU per check at the fixed rate against `ref`'s. */
  const cpuVs = (r: AnalyticsCheckRow, ref: AnalyticsCheckRow | undefined): string => (ref && r !== ref ? signedPct(r.rateCheckThreadMicrosPerCheck, ref.rateCheckThreadMicrosPerCheck) : "–");
  const out = [
    "| analytics | check thread CPU per check (µs) | vs off | vs events | process CPU per check (µs) | p50 / p99 / p99.9 (ms) | p99 of each round (ms) | rows made / written / dropped |",
    "| --- | ---: | ---: | ---: | ---: | --- | --- | --- |",
  ];
  for (const r of c.rows) {
    out.push(`| ${r.variant} | ${f2(r.rateCheckThreadMicrosPerCheck)} | ${cpuVs(r, off)} | ${r === events || r === off ? "–" : cpuVs(r, events)} | ${f2(r.rateProcessMicrosPerCheck)} | ${f2(r.rate.p50Ms)} / ${f2(r.rate.p99Ms)} / ${f2(r.rate.p999Ms)} | ${r.rateRuns.map((x) => f2(x.p99Ms)).join(", ")} | ${r.rateRows ? `${int(r.rateRows.made)} / ${int(r.rateRows.written)} / ${int(r.rateRows.dropped)}` : "–"} |`);
  }
  return out;
}

function threadTable(t: NonNullable<AnalyticsSection["thread"]>): string[] {
  const off = t.variants.find((v) => v.variant === "off");
  const events = t.variants.find((v) => v.variant === "events");
  const vs = (x: number, ref: ThreadVariantResult | undefined): string => (ref && ref.checkThread > 0 ? `${x >= ref.checkThread ? "+" : ""}${((x / ref.checkThread - 1) * 100).toFixed(0)}%` : "–");
  const out = [
    "| analytics | check thread CPU per check (µs) | each round | vs off | vs events | process CPU per check (µs) | writer thread CPU per row (µs) | rows made / written / dropped (last round) |",
    "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const v of t.variants) {
    const last = v.runs[v.runs.length - 1];
    const rows = last && last.rows.made > 0 ? `${int(last.rows.made)} / ${int(last.rows.written)} / ${int(last.rows.dropped)}` : "–";
    out.push(`| ${v.variant} | ${f2(v.checkThread)} | ${v.runs.map((r) => f2(r.checkThread)).join(", ")} | ${v === off ? "–" : vs(v.checkThread, off)} | ${v === off || v === events ? "–" : vs(v.checkThread, events)} | ${f2(v.process)} | ${f2(v.writerPerRow)} | ${rows} |`);
  }
  return out;
}

export function analyticsTables(s: AnalyticsSection): string[] {
  const out = [`Run at ${s.at}; load average before ${s.loadAverage}, after ${s.finishedLoadAverage}.`, "", ...storeTable(s.store), ""];
  for (const c of [s.check, s.checkShared]) {
    if (!c) continue;
    out.push(
      `The check path over ${int(c.keys)} keys with analytics ${c.rows.map((r) => r.variant).join(", ")} (the store's writes on the keyward-writer thread; \`-inline\`: on the check thread), ${c.rounds} rounds taking turns. ${c.floating ? "**Floating, not the bench's design: nothing pinned**, keyward's threads, the load generator and PostgreSQL on any core, so the figures are the machine's throughput, not the check thread's." : "The check thread alone on core 1; the writer thread, the load generator and PostgreSQL on core 0."}${c.podCpu === 0 ? ` Each server in a CPU cgroup of its own without a limit (bench/lib/cgroup.ts), as a pod without limits.cpu: on core 1 together the variants share it by equal weights, as such pods on a full node do${c.writerCore === "checks" ? ", each writer thread on core 1 with its check thread" : ""}; saturated means core 1 busy at least ${SATURATED_BUSY * 100}% of the time without analytics. The clients share core 0, which binds the closed loops as well: the check threads wait for core 1 part of the time and idle part of it.` : ""}${c.podCpu !== undefined && c.podCpu > 0 ? ` Each server under a CPU limit of ${c.podCpu} CPU (a CFS quota per 100 ms period of its own cgroup, as a pod's limits.cpu; bench/lib/cgroup.ts), so that keyward, not the client, runs out: every thread of it, the writer's too, draws on the quota${c.writerCore === "checks" ? ", the writer thread on core 1 with the check thread" : ""}; saturated means throttled in at least ${SATURATED_THROTTLED * 100}% of the periods without analytics.` : ""}${c.together ? " A round's closed loops ran at once, each variant with its own client, so that the machine's speed was the same for all of them." : ""} At saturation: closed loop ${c.maxSeconds} s, ${c.client ? `${c.client.tool} (grpc-go, every request encoded once) with ${c.client.concurrency} calls in flight over ${c.client.connections} connections, every answer checked against its request's expected decision` : "ghz with 64 calls in flight (bound by ghz's core, not saturated)"}. ${c.floating ? "" : "On these two cores the writer thread and PostgreSQL share core 0 with the client, so a store's loss here is its whole cost on the machine: the check thread's own share is in its CPU per check, below and at the fixed rate."}`,
      "",
      ...saturatedTable(c),
      "",
      `Saturated throughput against the target (at most ${TARGET_LOSS * 100}% less than off):`,
      "",
      ...targetLines(c),
      "",
      `Then ${c.rateSeconds} s at ${int(c.rps)} RPS each (${c.client ? `${c.client.tool}, calls started at that rate, at most ${c.client.concurrency} in flight` : "ghz, 8 workers"}): every variant gets the same load, so the check thread's CPU per check (the writes of the run's rows included) compares what each costs the thread.`,
      "",
      ...rateTable(c),
      "",
    );
  }
  if (s.thread) {
    const t = s.thread;
    out.push(
      `The check thread's CPU in process (\`bench/analytics-thread.ts\`, ${int(t.keys)} keys, ${int(t.checks)} checks with a valid key per run, ${t.rounds} rounds taking turns; the check handler without its socket, so a check here costs less than over gRPC):`,
      "",
      ...threadTable(t),
      "",
    );
  }
  return out;
}
