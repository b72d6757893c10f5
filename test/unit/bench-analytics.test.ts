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
const row = (variant: AnalyticsCheckRow["variant"], maxRps: number, checkThreadMicrosPerCheck = 12, rateCheckThreadMicrosPerCheck = 20): AnalyticsCheckRow => ({
  variant,
  maxRuns: [load(maxRps), load(maxRps + 100)],
  rateRuns: [load(5000, 1.5), load(5000, 1.2)],
  maxRps,
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

describe("analyticsTables", () => {
  const md = analyticsTables({
    at: "2026-12-01T15:00:00Z",
    loadAverage: "1",
    finishedLoadAverage: "1",
    command: "node bench/run.ts --only analytics",
    store: [store("sqlite"), store("postgres")],
    check: { keys: 100_000, rounds: 2, maxSeconds: 6, rateSeconds: 10, rps: 5000, rows: [row("off", 10_000), row("events", 9_800, 12, 22), row("sqlite", 9_000, 13.2, 24), row("postgres", 9_500, 12.6, 25)] },
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

  it("gives each variant's check-thread CPU per check at the fixed rate against off and against the event alone, then the ghz-bound closed loop, the writer's CPU per row and the rows", () => {
    expect(md).toMatch(/\| off \| 20\.00 \| – \| – \| 25\.00 \| 0\.30 \/ 1\.20 \/ 2\.00 \| 1\.50, 1\.20 \| 10,000 \| 10,000, 10,100 \| – \| 12\.00 \| – \| – \|/);
    expect(md).toMatch(/\| events \| 22\.00 \| \+10\.0% \| – \|/);
    expect(md).toMatch(/\| sqlite \| 24\.00 \| \+20\.0% \| \+9\.1% \| 29\.00 \| .* \| 9,000 \| 9,000, 9,100 \| -10\.0% \| 13\.20 \| 20\.50 \| 10 \/ 9 \/ 1 \|/);
    expect(md).toMatch(/\| postgres \| 25\.00 \| \+25\.0% \| \+13\.6% \|/);
  });

  it("gives the check thread's CPU per check against off and against the event alone, and the writer thread's per row", () => {
    expect(md).toMatch(/\| off \| 6\.00 \| 6\.00, 6\.20 \| – \| – \| 6\.50 \| – \|/);
    expect(md).toMatch(/\| events \| 7\.50 \| .* \| \+25% \| – \|/);
    expect(md).toMatch(/\| sqlite \| 9\.00 \| 9\.00, 9\.10 \| \+50% \| \+20% \| 30\.00 \| 18\.25 \| 100,000 \/ 99,000 \/ 1,000 \|/);
  });
});
