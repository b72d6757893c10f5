// `make bench`'s analytics section: its tables show each backend's figures and the check path's
// change against analytics off, from the medians they claim.
import { describe, expect, it } from "vitest";
import { analyticsTables } from "../../bench/analytics-report.ts";
import type { AnalyticsCheckRow } from "../../bench/analytics-check.ts";
import type { StoreBenchResult } from "../../bench/analytics.ts";
import type { LoadResult } from "../../bench/lib/ghz.ts";

const load = (rps: number, p99Ms = 1): LoadResult => ({ rps, count: rps * 6, errors: 0, p50Ms: 0.3, p99Ms, p999Ms: 2, maxMs: 3, serverCpu: 0.5 });
const store = (backend: "sqlite" | "postgres"): StoreBenchResult => ({
  backend,
  keys: 1000,
  writeRows: 100_000,
  writeSeconds: 5,
  eventsPerSecond: 20_000,
  eventsPerCpuSecond: 40_000,
  ...(backend === "postgres" ? { serverEventsPerCpuSecond: 20_121 } : {}),
  bytesPerEvent: backend === "sqlite" ? 271 : 480,
  rows: 10_000_000,
  seedSeconds: 300,
  topKeysMs: 150,
  topKeysRowsMs: 15_000,
  hourlyTimelineMs: 4.25,
  dailyTimelineMs: 50,
  dropDayMs: 622,
  droppedDay: backend === "sqlite" ? 333_334 : 1,
});
const row = (variant: AnalyticsCheckRow["variant"], maxRps: number, checkThreadMicrosPerCheck = 12, rateCheckThreadMicrosPerCheck = 20, busy = 0.97, p99Ms = 4): AnalyticsCheckRow => ({
  variant,
  maxRuns: [load(maxRps, p99Ms), load(maxRps + 100, p99Ms + 1)],
  rateRuns: [load(5000, 1.5), load(5000, 1.2)],
  maxRps,
  saturated: load(maxRps, p99Ms),
  checkThreadBusy: busy,
  coreBusy: [0.99, busy],
  clientMicrosPerCall: 16.5,
  cpuMicrosPerCheck: 15,
  checkThreadMicrosPerCheck,
  ...(variant === "off" ? {} : { writerMicrosPerRow: 20.5 }),
  cpu: [],
  rateCheckThreadMicrosPerCheck,
  rateProcessMicrosPerCheck: rateCheckThreadMicrosPerCheck + 5,
  rate: load(5000, 1.2),
  ...(variant === "off" ? {} : { rows: { made: 10, written: 9, dropped: 1 } }),
});

const thread = (checkThread: number) => ({ checks: 100_000, checkThread, process: 30, rows: { made: 100_000, written: 99_000, dropped: 1000 } });

/** A section's run details, the same for every table below. */
const run = { at: "2026-12-01T15:00:00Z", loadAverage: "1", finishedLoadAverage: "1", command: "node bench/run.ts --only analytics" };
const client = { tool: "keyward-bench-go-load", concurrency: 64, connections: 4, command: "keyward-bench-go-load -addr 127.0.0.1:1" };

describe("analyticsTables", () => {
  const md = analyticsTables({
    ...run,
    store: [store("sqlite"), store("postgres")],
    check: { keys: 100_000, rounds: 2, maxSeconds: 6, rateSeconds: 10, rps: 5000, client, rows: [row("off", 10_000), row("events", 9_800, 12, 22, 0.98, 5), row("sqlite", 9_000, 13.2, 24, 0.95, 7.5), row("postgres", 8_500, 12.6, 25, 0.9, 9)] },
    thread: {
      keys: 100_000,
      checks: 100_000,
      rounds: 2,
      variants: [
        { variant: "off", runs: [thread(6), thread(6.2)], checkThread: 6, process: 6.5 },
        { variant: "events", runs: [thread(7.5), thread(7.4)], checkThread: 7.5, process: 8 },
        { variant: "sqlite", runs: [thread(9), thread(9.1)], checkThread: 9, process: 30, writerPerRow: 18.25 },
      ],
    },
  }).join("\n");

  it("sets the backends side by side, with the server's own rate for PostgreSQL and what a day drop removed", () => {
    expect(md).toContain("| | sqlite | postgres |");
    expect(md).toMatch(/bytes per event on disk \(rows, indexes, rollups\) \| 271 \| 480 \|/);
    expect(md).toMatch(/database server alone \| – \| 20,121 \|/);
    expect(md).toMatch(/seeding 10M rows/);
    expect(md).toMatch(/drop the oldest day, ms \| 622 \(333,334 rows\) \| 622 \(1 partition\) \|/);
    expect(md).toMatch(/hourly timeline.*\| 4\.3 \| 4\.3 \|/);
  });

  it("gives each variant's saturated throughput against off and against the event alone, how busy the check thread was, the latency at saturation and the client's CPU per call", () => {
    expect(md).toContain("keyward-bench-go-load (grpc-go, every request encoded once) with 64 calls in flight over 4 connections");
    expect(md).toMatch(/\| off \| 10,000 \| 10,000, 10,100 \| – \| – \| 0\.97 \| 0\.99 \/ 0\.97 \| 0\.30 \/ 4\.00 \/ 2\.00 \| 4\.00, 5\.00 \| 16\.50 \| 12\.00 \| 15\.00 \| – \| – \|/);
    expect(md).toMatch(/\| events \| 9,800 \| 9,800, 9,900 \| -2\.0% \| – \| 0\.98 \|/);
    expect(md).toMatch(/\| sqlite \| 9,000 \| 9,000, 9,100 \| -10\.0% \| -8\.2% \| 0\.95 \| 0\.99 \/ 0\.95 \| 0\.30 \/ 7\.50 \/ 2\.00 \| 7\.50, 8\.50 \| 16\.50 \| 13\.20 \| 15\.00 \| 20\.50 \| 10 \/ 9 \/ 1 \|/);
    expect(md).toMatch(/\| postgres \| 8,500 \| .* \| -15\.0% \| -13\.3% \|/);
  });

  it("reads each store's saturated throughput against the 10% target, against keyward with its store off (the usage event alone), with its p99 against off's", () => {
    expect(md).toContain("- events, the usage event alone (which keyward makes with its store off too): -2.0% against off.");
    expect(md).toContain("- sqlite: throughput -8.2% against events (keyward with its store off), -10.0% against off: within the 10% target; p99 7.50 ms against off's 4.00 ms.");
    expect(md).toContain("- postgres: throughput -13.3% against events (keyward with its store off), -15.0% against off: over the 10% target; p99 9.00 ms against off's 4.00 ms.");
    expect(md).not.toContain("Not saturated");
  });

  it("judges a run under a CPU limit by its throttling, and variants run at once by each round's ratio", () => {
    const limited = (variant: AnalyticsCheckRow["variant"], rounds: number[], throttled: number): AnalyticsCheckRow => ({
      ...row(variant, rounds[Math.floor(rounds.length / 2)] as number, 12, 20, 0.15),
      maxRuns: rounds.map((r) => load(r)),
      cpu: rounds.map(() => ({ process: 0.15, checkThread: 0.14, rowsMade: 0, seconds: 6, throttledShare: throttled })),
      ...(variant === "off" || variant === "events" ? {} : { rateRows: { made: 1000, written: 1000, dropped: 0 } }),
    });
    // The machine slowed between rounds; each round's ratio is what the verdict reads: sqlite -5%, -4%, -3% against events.
    const check = { keys: 100_000, rounds: 3, maxSeconds: 6, rateSeconds: 3, rps: 5000, client, podCpu: 0.15, writerCore: "checks" as const, together: true };
    const rows = [limited("off", [20_000, 15_000, 10_000], 0.97), limited("events", [18_000, 13_500, 9_000], 0.98), limited("sqlite", [17_100, 12_960, 8_730], 0.98)];
    const md2 = analyticsTables({ ...run, store: [], check: { ...check, rows } }).join("\n");
    expect(md2).toContain("Each server under a CPU limit of 0.15 CPU");
    expect(md2).toContain("A round's closed loops ran at once");
    expect(md2).toContain("| 0.15 (throttled in 0.97 of periods) |");
    expect(md2).toContain("- events, the usage event alone (which keyward makes with its store off too): -10.0% against off.");
    expect(md2).toContain("- sqlite: throughput -4.0% against events (keyward with its store off), -13.6% against off: within the 10% target;");
    expect(md2).toContain("- Changes are the median of each round's ratio");
    // The fixed-rate runs' own rows: below the limit, every row written.
    expect(md2).toMatch(/\| sqlite \| 20\.00 \| .* \| 1,000 \/ 1,000 \/ 0 \|$/m);
    // Not throttled without analytics: keyward did not run out, so nothing is judged.
    const loose = analyticsTables({ ...run, store: [], check: { ...check, rows: [limited("off", [20_000, 15_000, 10_000], 0.4), rows[2] as AnalyticsCheckRow] } }).join("\n");
    expect(loose).toContain("not judged, keyward not at its CPU limit");
    expect(loose).toContain("- Not saturated: with analytics off keyward was throttled in 0.40 of the CFS periods (below 0.9)");
  });

  it("judges variants sharing core 1 without a limit (--pod-cpu 0) by that core's busy share, and shows each check thread's wait for it", () => {
    const shared = (variant: AnalyticsCheckRow["variant"], rps: number, core1: number): AnalyticsCheckRow => ({
      ...row(variant, rps, 12, 20, 0.25),
      coreBusy: [0.99, core1],
      cpu: [{ process: 0.25, checkThread: 0.22, rowsMade: 0, seconds: 6, loopUtilization: 0.3, checkThreadWait: 0.4 }],
    });
    const check = { keys: 100_000, rounds: 1, maxSeconds: 6, rateSeconds: 3, rps: 5000, client, podCpu: 0, writerCore: "checks" as const, together: true };
    const busy = analyticsTables({ ...run, store: [], checkShared: { ...check, rows: [shared("off", 27_000, 0.92), shared("events", 26_000, 0.92), shared("sqlite", 25_000, 0.92)] } }).join("\n");
    expect(busy).toContain("Each server in a CPU cgroup of its own without a limit");
    expect(busy).toContain("(loop busy 0.30) (waiting for a CPU 0.40)");
    expect(busy).toMatch(/- sqlite: throughput -3\.8% against events .*: within the 10% target;/);
    const idle = analyticsTables({ ...run, store: [], checkShared: { ...check, rows: [shared("off", 27_000, 0.7), shared("sqlite", 25_000, 0.7)] } }).join("\n");
    expect(idle).toContain("not judged, the check thread not saturated");
    expect(idle).toContain("- Not saturated: with analytics off core 1, which the servers share, was busy 0.70 (below 0.9), so the clients bound the closed loops.");
  });

  it("gives no verdict when the check thread was not saturated without analytics, and says so", () => {
    const unsaturated = analyticsTables({
      ...run,
      store: [],
      check: { keys: 100_000, rounds: 2, maxSeconds: 6, rateSeconds: 10, rps: 5000, client, rows: [row("off", 10_000, 12, 20, 0.6), row("sqlite", 7_000)] },
    }).join("\n");
    expect(unsaturated).toContain("- sqlite: throughput -30.0% against off: not judged, the check thread not saturated;");
    expect(unsaturated).toContain("- Not saturated: with analytics off the check thread was busy 0.60 of its core (below 0.9); core 0 (the client's) was busy 0.99 and core 1 0.60, counting all that ran there.");
  });

  it("gives each variant's check-thread CPU per check at the fixed rate against off and against the event alone, and its latency", () => {
    expect(md).toContain("Then 10 s at 5,000 RPS each (keyward-bench-go-load, calls started at that rate, at most 64 in flight)");
    expect(md).toMatch(/\| off \| 20\.00 \| – \| – \| 25\.00 \| 0\.30 \/ 1\.20 \/ 2\.00 \| 1\.50, 1\.20 \|/);
    expect(md).toMatch(/\| events \| 22\.00 \| \+10\.0% \| – \|/);
    expect(md).toMatch(/\| sqlite \| 24\.00 \| \+20\.0% \| \+9\.1% \| 29\.00 \|/);
    expect(md).toMatch(/\| postgres \| 25\.00 \| \+25\.0% \| \+13\.6% \|/);
  });

  it("labels a run where nothing was pinned as not the bench's design", () => {
    const floating = analyticsTables({ ...run, store: [], check: { keys: 1000, rounds: 1, maxSeconds: 6, rateSeconds: 10, rps: 2000, client, floating: true, rows: [row("off", 10_000, 12, 20, 0.5), row("sqlite", 8_000)] } }).join("\n");
    expect(floating).toContain("**Floating, not the bench's design: nothing pinned**");
    expect(floating).not.toContain("The check thread alone on core 1");
    expect(floating).toContain("; core 0 was busy 0.99 and core 1 0.50");
    expect(md).toContain("The check thread alone on core 1");
  });

  it("still renders results whose closed loop was ghz's (no saturation figures)", () => {
    const { saturated: _s, checkThreadBusy: _b, clientMicrosPerCall: _c, coreBusy: _k, ...legacy } = row("off", 4_000);
    const old = analyticsTables({ ...run, store: [], check: { keys: 1000, rounds: 1, maxSeconds: 6, rateSeconds: 10, rps: 2000, rows: [legacy] } }).join("\n");
    expect(old).toContain("ghz with 64 calls in flight (bound by ghz's core, not saturated)");
    expect(old).toMatch(/\| off \| 4,000 \| .* \| – \| – \| – \| – \| – \/ – \/ – \|/);
  });

  it("gives the check thread's CPU per check against off and against the event alone, and the writer thread's per row", () => {
    expect(md).toMatch(/\| off \| 6\.00 \| 6\.00, 6\.20 \| – \| – \| 6\.50 \| – \|/);
    expect(md).toMatch(/\| events \| 7\.50 \| .* \| \+25% \| – \|/);
    expect(md).toMatch(/\| sqlite \| 9\.00 \| 9\.00, 9\.10 \| \+50% \| \+20% \| 30\.00 \| 18\.25 \| 100,000 \/ 99,000 \/ 1,000 \|/);
  });
});
