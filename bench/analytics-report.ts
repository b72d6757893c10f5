// The analytics section of bench/results/latest.md (and so of docs/benchmarks.md): the
// store's write rate, size, query and day-drop times (bench/analytics.ts), and the check
// path with analytics on against off (bench/analytics-check.ts).
import type { AnalyticsCheckResult, AnalyticsCheckRow } from "./analytics-check.ts";
import type { StoreBenchResult } from "./analytics.ts";
import type { ThreadVariantResult } from "./analytics-thread.ts";

export interface AnalyticsSection {
  at: string;
  loadAverage: string;
  finishedLoadAverage: string;
  command: string;
  store: StoreBenchResult[];
  check?: AnalyticsCheckResult;
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

function checkTable(c: AnalyticsCheckResult): string[] {
  const off = c.rows.find((r) => r.variant === "off");
  const out = [
    "| analytics | at the fixed rate: check thread CPU per check (µs) | vs off | vs events | process CPU per check (µs) | p50 / p99 / p99.9 (ms) | p99 of each round (ms) | closed loop, ghz-bound: RPS (median) | each round | vs off | closed loop: check thread CPU per check (µs) | writer thread CPU per row (µs) | rows made / written / dropped |",
    "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | --- | ---: | ---: | ---: | --- |",
  ];
  const events = c.rows.find((r) => r.variant === "events");
  /** The check thread's CPU per check at the fixed rate against `ref`'s. */
  const cpuVs = (r: AnalyticsCheckRow, ref: AnalyticsCheckRow | undefined): string => (ref && r !== ref ? pct(r.rateCheckThreadMicrosPerCheck, ref.rateCheckThreadMicrosPerCheck) : "–");
  const pct = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined ? "–" : `${a >= b ? "+" : ""}${((a / b - 1) * 100).toFixed(1)}%`);
  for (const r of c.rows) {
    const vs = off && r !== off ? pct(r.maxRps, off.maxRps) : "–";
    const rows = r.rows ? `${int(r.rows.made)} / ${int(r.rows.written)} / ${int(r.rows.dropped)}` : "–";
    out.push(
      `| ${r.variant} | ${f2(r.rateCheckThreadMicrosPerCheck)} | ${cpuVs(r, off)} | ${r === events || r === off ? "–" : cpuVs(r, events)} | ${f2(r.rateProcessMicrosPerCheck)} | ${f2(r.rate.p50Ms)} / ${f2(r.rate.p99Ms)} / ${f2(r.rate.p999Ms)} | ${r.rateRuns.map((x) => f2(x.p99Ms)).join(", ")} | ${int(r.maxRps)} | ${r.maxRuns.map((x) => int(x.rps)).join(", ")} | ${vs} | ${f2(r.checkThreadMicrosPerCheck)} | ${f2(r.writerMicrosPerRow)} | ${rows} |`,
    );
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
  if (s.check) {
    const c = s.check;
    out.push(
      `The check path over ${int(c.keys)} keys with analytics ${c.rows.map((r) => r.variant).join(", ")} (the store's writes on the keyward-writer thread; \`-inline\`: on the check thread): ${c.rounds} rounds taking turns, closed loop ${c.maxSeconds} s (64 in flight), then ${c.rateSeconds} s at ${int(c.rps)} RPS each. The check thread alone on core 1; the writer thread, ghz and PostgreSQL on core 0. At the fixed rate every variant gets the same load, so the check thread's CPU per check (the writes of the run's rows included) compares what each costs the thread; at this rate most of it is per-request I/O, which more load would share. The closed loop is bound by ghz on core 0 (the check thread is busy a fraction of its core) and shows what the writer thread takes from ghz, not what the check path sustains; its CPU per check depends on the rate each reached.`,
      "",
      ...checkTable(c),
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
