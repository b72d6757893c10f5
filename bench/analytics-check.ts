// The check path with the analytics store on, against off: keyward's check path over
// --keys keys (bench/servers/server.ts --mode authz), once without analytics, once
// handing every answered check to the analytics rows with SQLite (a file) and once with
// PostgreSQL (a throwaway cluster, test/support/postgres.ts), with the check bench's request
// mix (same keys, same requests). The store's writes run on their own thread (keyward-writer,
// as in keyward authz); `sqlite-inline` and `postgres-inline` write from the thread answering
// checks instead, as keyward did before. The servers are pinned to core 1, and their writer
// thread, the load generator and PostgreSQL's server to core 0: core 1 is the check thread's
// own, and the writer thread's CPU is measured apart (per row) so that no cost is hidden.
// The load is keyward-bench-go-load's (bench/clients/go-load: grpc-go and go-control-plane's
// types, every request encoded once up front), cheap enough per call for one core of it to
// keep the check thread busy, which ghz, at several times its CPU per call, could not. Every
// answer is checked against the decision its request expects. The machine is shared: every variant is started and warmed
// up first, then the runs take turns, round after round, so the machine's drift falls on all
// alike:
//   - closed-loop runs (--concurrency calls in flight over --connections connections,
//     --max-seconds each): the most each sustains, its latency at saturation, how busy the
//     check thread was (its CPU seconds per second: near 1 is saturated), its CPU per check,
//     of the check thread and of the whole process (CPU seconds over checks answered), the
//     writer thread's CPU per row made and the client's CPU per call;
//   - fixed-rate runs at --rate-share of the off variant's median maximum (the same client,
//     calls started at that rate, --rate-seconds each): p50 / p99 / p99.9, and the CPU per check of the check thread
//     and of the whole process, the writes of the run's rows included.
// After each run the variant's queue is waited out (rows written + dropped = rows made), so
// no store write of one variant overlaps another's run.
//
//   node bench/analytics-check.ts [--keys 100000] [--rounds 3] [--max-seconds 6]
//                                 [--rate-seconds 10] [--rate-share 0.5] [--variants off,sqlite,postgres]
//                                 [--concurrency 64] [--connections 4] [--floating] [--writer-core client|checks]
//                                 (--writer-core checks: the store's writer thread on the check thread's
//                                 core 1, as in a pod of one CPU, and the load generator alone on core 0:
//                                 what the store takes from the checks themselves; default client)
//                                 (--database-nice 19: PostgreSQL's processes at nice 19, taking only
//                                 what the load generator leaves of core 0, as a database on a host of
//                                 its own would take nothing of either; default 0; --database-idle:
//                                 under SCHED_IDLE instead, preempted at once by any other thread)
//                                 (--pod-cpu 0.7: each server under a CPU limit of 0.7 CPU, a CFS quota of
//                                 its own cgroup as a pod's limits.cpu sets, so that keyward, not the load
//                                 generator, is what runs out: every thread of the process, the writer's
//                                 too, within the quota; bench/lib/cgroup.ts; default none. 0: a cgroup
//                                 of its own without a quota, as a pod without limits.cpu: with
//                                 --together the variants share core 1 by equal weights, as such pods
//                                 on a full node do, and none is ever throttled)
//                                 (--together, with --pod-cpu: a round's closed loops all at once, each
//                                 variant with its own client, so that the machine's speed, which
//                                 drifts by half within minutes here, is the same for all of them)
//                                 (--floating: nothing pinned, every thread, the client and PostgreSQL
//                                 on any core: the machine's throughput, not the check thread's)
//                                 (variants also events: the check's event alone, which usage
//                                 makes anyway; sqlite-inline, postgres-inline: the writes on the check thread;
//                                 sqlite@N, postgres@N: the store's threads at nice N, --analytics-thread-nice,
//                                 where the others run at keyward's default)
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { LOAD, chartNodeOptions, medianByP99 } from "./check.ts";
import { requestMix } from "./lib/fixture.ts";
import type { LoadResult } from "./lib/ghz.ts";
import { GO_LOAD_TOOL, goLoad, goLoadArgs, writeLoadFile } from "./lib/go-load.ts";
import { busyShares, cpuTicks, run, startServer, threadCpuSeconds, threadsNamed, threadWaitSeconds, treeCpuSeconds, type ServerProc } from "./lib/proc.ts";
import { WRITER_THREAD_NAME } from "../src/analytics/writer-thread.ts";
import { startPostgres, type PostgresCluster } from "../test/support/postgres.ts";
import { median } from "./lib/stats.ts";
import { limitCpu, type CpuLimit, type CpuLimitStat } from "./lib/cgroup.ts";

/** The core the writer thread is pinned to: the load generator's, or the check thread's. */
export type WriterCore = "client" | "checks";

type AnalyticsBase = "off" | "events" | "sqlite" | "postgres" | "sqlite-inline" | "postgres-inline";
/** A variant; `@N` runs the store's threads at nice N (--analytics-thread-nice) instead of keyward's default. */
export type AnalyticsVariant = AnalyticsBase | `${"sqlite" | "postgres"}@${number}`;

/** CPU of one closed-loop run, in CPU seconds per wall second, and the rows it made. */
export interface RunCpu {
  /** The whole process: every thread (check, writer, GC helpers, ...). */
  process: number;
  /** The thread answering checks (the main thread). */
  checkThread: number;
  /** The writer thread, when the variant has one. */
  writerThread?: number;
  rowsMade: number;
  /** Busy share of each core during the load (cpu0, cpu1, ...; everything on the machine, not only this bench). */
  cores?: number[];
  /** With --pod-cpu: the share of the run's CFS periods in which the process used its whole quota and was stopped. */
  throttledShare?: number;
  /** The check thread's event loop utilization during the closed loop: the share of its time running callbacks rather than waiting for I/O. */
  loopUtilization?: number;
  /** The share of the closed loop's wall time the check thread waited on a run queue (runnable, not running). */
  checkThreadWait?: number;
  /** CPU seconds per second during the closed loop alone (the fields above include writing out the run's rows after it). */
  inLoop?: { process: number; checkThread: number; writerThread?: number };
  /** The run's wall-clock seconds (the CPU figures are over these). */
  seconds: number;
}

export interface AnalyticsCheckRow {
  variant: AnalyticsVariant;
  maxRuns: LoadResult[];
  rateRuns: LoadResult[];
  /** Median of the closed-loop runs' RPS. */
  maxRps: number;
  // The three below are absent from results whose closed loop was ghz's.
  /** The closed-loop run with the median p99: latency at saturation. */
  saturated?: LoadResult;
  /** Median of the closed-loop runs' check-thread CPU seconds per second (1 = its core saturated). */
  checkThreadBusy?: number;
  /** Median of the closed-loop runs' client CPU per call (µs). */
  clientMicrosPerCall?: number;
  /** Median over the closed-loop runs of each core's busy share (core 0: client, writer, PostgreSQL; core 1: the check thread), whatever ran there. */
  coreBusy?: number[];
  /** Median of the closed-loop runs' server CPU per check (µs), the whole process. */
  cpuMicrosPerCheck: number;
  /** Median of the closed-loop runs' check-thread CPU per check (µs). */
  checkThreadMicrosPerCheck: number;
  /** Median of the closed-loop runs' writer-thread CPU per row made (µs); undefined without a writer thread. */
  writerMicrosPerRow?: number;
  cpu: RunCpu[];
  /** Median over the fixed-rate runs (every variant at one offered rate) of the check thread's CPU per check (µs), the writes of the run's rows included. */
  rateCheckThreadMicrosPerCheck: number;
  /** The same for the whole process (every thread, the writer's included). */
  rateProcessMicrosPerCheck: number;
  /** Fixed-rate run with the median p99. */
  rate: LoadResult;
  /** Rows the server made, wrote and dropped over the whole bench. */
  rows?: { made: number; written: number; dropped: number };
  /** The same over the fixed-rate runs alone. */
  rateRows?: { made: number; written: number; dropped: number };
}

export interface AnalyticsCheckResult {
  keys: number;
  rounds: number;
  maxSeconds: number;
  rateSeconds: number;
  rps: number;
  /** The closed loop's client, its calls in flight and connections, and its command line (ports and paths of the last run). */
  client?: { tool: string; concurrency: number; connections: number; command: string };
  /** Nothing was pinned (--floating). */
  floating?: boolean;
  /** Where the writer thread ran (--writer-core). */
  writerCore?: WriterCore;
  /** PostgreSQL's nice value, when not 0 (--database-nice). */
  databaseNice?: number;
  /** PostgreSQL's processes ran under SCHED_IDLE (--database-idle). */
  databaseIdle?: boolean;
  /** Each server's CPU limit in CPUs (--pod-cpu). */
  podCpu?: number;
  /** The closed loops of a round ran at once (--together). */
  together?: boolean;
  rows: AnalyticsCheckRow[];
}

export interface AnalyticsCheckOptions {
  keys: number;
  rounds: number;
  maxSeconds: number;
  rateSeconds: number;
  rateShare: number;
  variants: AnalyticsVariant[];
  /** Closed loop: calls in flight, and the HTTP/2 connections they share. */
  concurrency: number;
  connections: number;
  /** Nothing pinned: keyward's threads, the client and PostgreSQL float over every core (not the bench's design; labelled so). */
  floating?: boolean;
  /**
   * Where the writer thread runs: `client` (default) on core 0 with the load generator and
   * PostgreSQL, `checks` on core 1 with the check thread, as in a pod of one CPU.
   */
  writerCore?: WriterCore;
  /**
   * Nice value of PostgreSQL's processes (default 0). At 19 the database takes only what the
   * load generator leaves of core 0, the nearest these two cores come to a database on a host of
   * its own: its CPU is then neither the client's nor keyward's.
   */
  databaseNice?: number;
  /**
   * PostgreSQL's processes under SCHED_IDLE (chrt --idle): any runnable thread of normal policy
   * preempts them at once, where a nice-19 process keeps the CPU for the rest of its slice.
   */
  databaseIdle?: boolean;
  /**
   * Each server's CPU limit in CPUs, as a pod's limits.cpu (a CFS quota per 100 ms period), so
   * that keyward runs out of CPU before the load generator does. Undefined: no limit.
   */
  podCpu?: number;
  /**
   * The closed loops of a round run at once, every variant with its own client (on core 0), so
   * that the machine's speed is the same for all of them; needs --pod-cpu, whose quotas must fit
   * core 1 together. Default: one after another.
   */
  together?: boolean;
  log: (s: string) => void;
}


interface ServerStats {
  analytics?: { made: number; written: number; dropped: number };
  loop?: { idleMs: number; activeMs: number };
}

/** Waits until the server's queue is empty: every row made is written or dropped. */
async function drained(srv: ServerProc, deadlineMs = 60_000): Promise<ServerStats> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const st = (await srv.stats()) as ServerStats;
    const a = st.analytics;
    if (!a || a.written + a.dropped >= a.made) return st;
    if (Date.now() > until) throw new Error(`analytics queue not written out within ${deadlineMs} ms: ${JSON.stringify(a)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface CpuSample {
  process: number;
  checkThread: number;
  writerThread?: number;
  /** The check thread's run queue wait so far (s). */
  checkThreadWait: number;
}

/** CPU seconds so far of the server's process, its check thread and its writer thread (`tid`). */
function cpuSample(srv: ServerProc, tid: number | undefined): CpuSample {
  return {
    process: treeCpuSeconds(srv.pid),
    checkThread: threadCpuSeconds(srv.pid, srv.pid),
    ...(tid !== undefined ? { writerThread: threadCpuSeconds(srv.pid, tid) } : {}),
    checkThreadWait: threadWaitSeconds(srv.pid, srv.pid),
  };
}

export async function runAnalyticsCheckBench(o: AnalyticsCheckOptions): Promise<AnalyticsCheckResult> {
  if (o.together && (o.podCpu === undefined || o.podCpu * o.variants.length > 1)) throw new Error("--together needs --pod-cpu, with the variants' quotas fitting one core together (pod-cpu × variants ≤ 1; 0, no limit, shares it by equal weights)");
  const dir = mkdtempSync(join(tmpdir(), "keyward-bench-analytics-check-"));
  let cluster: PostgresCluster | undefined;
  const servers: ServerProc[] = [];
  const writerTids: (number | undefined)[] = [];
  const limits: (CpuLimit | undefined)[] = [];
  try {
    if (o.variants.includes("postgres")) {
      cluster = await startPostgres();
      const postmaster = readFileSync(join(cluster.dir, "data", "postmaster.pid"), "utf8").split("\n")[0]!;
      // The database's processes beside the load generator, off keyward's core; backends it forks later inherit it.
      if (!o.floating) await run("taskset", ["-a", "-p", "-c", "0", postmaster]);
      // The postmaster and the processes it runs now; backends it forks later inherit its nice value and policy.
      const processes = o.databaseNice || o.databaseIdle ? [postmaster, ...(await run("pgrep", ["-P", postmaster])).split(/\s+/).filter(Boolean)] : [];
      if (o.databaseNice) await run("renice", ["-n", String(o.databaseNice), "-p", ...processes]);
      if (o.databaseIdle) for (const pid of processes) await run("chrt", ["--idle", "-p", "0", pid]);
    }
    const mix = requestMix(o.keys, 1000);
    // The check bench's requests, each with the code its answer must carry.
    const loadFile = writeLoadFile(dir, "load", mix);
    const load = (port: number, seconds: number, rps = 0): Promise<LoadResult> => goLoad({ port, requestsFile: loadFile, seconds, concurrency: o.concurrency, connections: o.connections, rps, ...(o.floating ? {} : { cpus: "0" }) });
    const closedLoop = (port: number, seconds: number): Promise<LoadResult> => load(port, seconds);
    let clientCommand = "";
    const nodeFlags = ["--max-old-space-size=8192", ...chartNodeOptions()];
    for (const v of o.variants) {
      o.log(`analytics ${v}: starting keyward's check path over ${o.keys} keys`);
      const [base = "off", nice] = v.split("@");
      const [store = "off", writer = "thread"] = base.split("-");
      const extra = store === "sqlite" ? ["--analytics-path", join(dir, `analytics-${v}.sqlite`)] : store === "postgres" ? ["--analytics-url", cluster!.url()] : [];
      const srv = await startServer(["--mode", "authz", "--keys", String(o.keys), "--analytics", store, "--analytics-writer", writer, ...extra], { ...(o.floating ? {} : { cpus: "1" }), nodeFlags, ...(nice !== undefined ? { env: { KEYWARD_ANALYTICS_THREAD_NICE: nice } } : {}) });
      servers.push(srv);
      // The writer thread beside the load generator and the database, off the check thread's core;
      // with --writer-core checks it stays on the check thread's core, where the process started.
      const writers = threadsNamed(srv.pid, WRITER_THREAD_NAME);
      if ((store === "sqlite" || store === "postgres") && writer === "thread" && writers.length !== 1) throw new Error(`${v}: expected one ${WRITER_THREAD_NAME} thread, found ${writers.length}`);
      if (!o.floating && o.writerCore !== "checks") for (const tid of writers) await run("taskset", ["-p", "-c", "0", String(tid)]);
      writerTids.push(writers[0]);
      limits.push(o.podCpu !== undefined ? limitCpu(srv.pid, o.podCpu, `keyward-bench-${srv.pid}`) : undefined);
      await closedLoop(srv.port, LOAD.warmupSeconds);
      await drained(srv);
    }
    const maxRuns = o.variants.map((): LoadResult[] => []);
    const cpus = o.variants.map((): RunCpu[] => []);
    const closedRun = async (r: number, i: number, v: AnalyticsVariant): Promise<void> => {
        const srv = servers[i]!;
        const sample = (): CpuSample => cpuSample(srv, writerTids[i]);
        const st0 = (await srv.stats()) as ServerStats;
        const made0 = st0.analytics?.made ?? 0;
        const c0 = sample();
        const limit0 = limits[i]?.stat();
        const ticks0 = cpuTicks();
        const t0 = performance.now();
        const res = await closedLoop(srv.port, o.maxSeconds);
        const cLoop = sample();
        const loopUtilization = utilization(st0.loop, ((await srv.stats()) as ServerStats).loop);
        const loopSecs = (performance.now() - t0) / 1000;
        const cores = busyShares(ticks0, cpuTicks()).slice(1);
        const throttledShare = throttled(limit0, limits[i]?.stat());
        clientCommand = [GO_LOAD_TOOL, ...goLoadArgs({ port: srv.port, requestsFile: loadFile, seconds: o.maxSeconds, concurrency: o.concurrency, connections: o.connections })].join(" ");
        const secs = (performance.now() - t0) / 1000;
        // The store writes of the run's last rows are part of its cost.
        const st = await drained(srv);
        const c1 = sample();
        const perSec = (a: number, b: number, over = secs): number => Math.round(((b - a) / over) * 1000) / 1000;
        const cpu: RunCpu = {
          process: perSec(c0.process, c1.process),
          checkThread: perSec(c0.checkThread, c1.checkThread),
          ...(c0.writerThread !== undefined && c1.writerThread !== undefined ? { writerThread: perSec(c0.writerThread, c1.writerThread) } : {}),
          rowsMade: (st.analytics?.made ?? 0) - made0,
          cores,
          ...(throttledShare !== undefined ? { throttledShare } : {}),
          ...(loopUtilization !== undefined ? { loopUtilization } : {}),
          checkThreadWait: perSec(c0.checkThreadWait, cLoop.checkThreadWait, loopSecs),
          inLoop: {
            process: perSec(c0.process, cLoop.process, loopSecs),
            checkThread: perSec(c0.checkThread, cLoop.checkThread, loopSecs),
            ...(c0.writerThread !== undefined && cLoop.writerThread !== undefined ? { writerThread: perSec(c0.writerThread, cLoop.writerThread, loopSecs) } : {}),
          },
          seconds: Math.round(secs * 1000) / 1000,
        };
        cpus[i]!.push(cpu);
        maxRuns[i]!.push({ ...res, serverCpu: cpu.process });
        o.log(`round ${r + 1}, analytics ${v}: closed loop ${res.rps} rps, p50 ${res.p50Ms} p99 ${res.p99Ms} ms, client ${res.clientCpuMicrosPerCall} µs per call, cpu: process ${cpu.process}, check thread ${cpu.checkThread}, writer thread ${cpu.writerThread ?? "-"} (${cpu.rowsMade} rows; in the loop alone: process ${cpu.inLoop?.process}, check thread ${cpu.inLoop?.checkThread}, writer thread ${cpu.inLoop?.writerThread ?? "-"}), cores busy ${cores.join(" / ")}${throttledShare !== undefined ? `, throttled in ${Math.round(throttledShare * 100)}% of periods` : ""}${loopUtilization !== undefined ? `, check loop busy ${loopUtilization}` : ""}, check thread waiting ${cpu.checkThreadWait}`);
    };
    for (let r = 0; r < o.rounds; r++) {
      // --together: every variant's closed loop at once, each with its own client, so that the
      // machine's speed at that moment is the same for all; else one after another.
      if (o.together) await Promise.all(o.variants.map((v, i) => closedRun(r, i, v)));
      else for (const [i, v] of o.variants.entries()) await closedRun(r, i, v);
    }
    const offAt = o.variants.indexOf("off");
    const ref = median(maxRuns[offAt >= 0 ? offAt : 0]!.map((x) => x.rps));
    const rps = Math.round(ref * o.rateShare);
    const rateRuns = o.variants.map((): LoadResult[] => []);
    const rateCpus = o.variants.map((): { checkThread: number; process: number }[] => []);
    const rateRows = o.variants.map(() => ({ made: 0, written: 0, dropped: 0 }));
    for (let r = 0; r < o.rounds; r++) {
      for (const [i, v] of o.variants.entries()) {
        const srv = servers[i]!;
        const before = (await drained(srv)).analytics;
        const c0 = cpuSample(srv, writerTids[i]);
        const res = await load(srv.port, o.rateSeconds, rps);
        // The writes of the run's rows are part of its cost, as in the closed loop.
        const after = (await drained(srv)).analytics;
        if (before && after) {
          const t = rateRows[i]!;
          t.made += after.made - before.made;
          t.written += after.written - before.written;
          t.dropped += after.dropped - before.dropped;
        }
        const c1 = cpuSample(srv, writerTids[i]);
        const checks = Math.max(1, res.rps * o.rateSeconds);
        const perCheck = (a: number, b: number): number => Math.round(((b - a) / checks) * 1e7) / 10;
        rateRuns[i]!.push(res);
        rateCpus[i]!.push({ checkThread: perCheck(c0.checkThread, c1.checkThread), process: perCheck(c0.process, c1.process) });
        o.log(`round ${r + 1}, analytics ${v}: at ${rps} rps: ${res.rps} rps, p50 ${res.p50Ms} p99 ${res.p99Ms} p99.9 ${res.p999Ms} ms, CPU per check: check thread ${rateCpus[i]!.at(-1)!.checkThread} µs, process ${rateCpus[i]!.at(-1)!.process} µs`);
      }
    }
    const rows: AnalyticsCheckRow[] = [];
    for (const [i, v] of o.variants.entries()) {
      const st = await drained(servers[i]!);
      const runs = maxRuns[i]!;
      const sortedRate = [...rateRuns[i]!].sort((a, b) => a.p99Ms - b.p99Ms);
      rows.push({
        variant: v,
        maxRuns: runs,
        rateRuns: rateRuns[i]!,
        maxRps: median(runs.map((x) => x.rps)),
        saturated: medianByP99(runs),
        checkThreadBusy: median(cpus[i]!.map((c) => c.checkThread)),
        clientMicrosPerCall: median(runs.map((x) => x.clientCpuMicrosPerCall ?? NaN)),
        coreBusy: (cpus[i]![0]?.cores ?? []).map((_, k) => median(cpus[i]!.map((c) => c.cores?.[k] ?? NaN))),
        cpuMicrosPerCheck: Math.round(median(runs.map((x) => ((x.serverCpu ?? NaN) / x.rps) * 1e6)) * 10) / 10,
        checkThreadMicrosPerCheck: Math.round(median(runs.map((x, j) => (cpus[i]![j]!.checkThread / x.rps) * 1e6)) * 10) / 10,
        ...(writerTids[i] !== undefined ? { writerMicrosPerRow: Math.round(median(cpus[i]!.map((c) => (((c.writerThread ?? NaN) * c.seconds) / Math.max(1, c.rowsMade)) * 1e6)) * 10) / 10 } : {}),
        cpu: cpus[i]!,
        rateCheckThreadMicrosPerCheck: median(rateCpus[i]!.map((c) => c.checkThread)),
        rateProcessMicrosPerCheck: median(rateCpus[i]!.map((c) => c.process)),
        rate: sortedRate[Math.floor((sortedRate.length - 1) / 2)]!,
        ...(st.analytics ? { rateRows: rateRows[i]! } : {}),
        ...(st.analytics ? { rows: st.analytics } : {}),
      });
    }
    return { keys: o.keys, rounds: o.rounds, maxSeconds: o.maxSeconds, rateSeconds: o.rateSeconds, rps, client: { tool: GO_LOAD_TOOL, concurrency: o.concurrency, connections: o.connections, command: clientCommand }, ...(o.floating ? { floating: true } : {}), ...(o.writerCore ? { writerCore: o.writerCore } : {}), ...(o.databaseNice ? { databaseNice: o.databaseNice } : {}), ...(o.databaseIdle ? { databaseIdle: true } : {}), ...(o.podCpu !== undefined ? { podCpu: o.podCpu } : {}), ...(o.together ? { together: true } : {}), rows };
  } finally {
    for (const s of servers) await s.stop();
    for (const l of limits) l?.remove();
    await cluster?.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The event loop's utilization between two samples. */
function utilization(a: ServerStats["loop"], b: ServerStats["loop"]): number | undefined {
  if (!a || !b) return undefined;
  const active = b.activeMs - a.activeMs;
  const all = active + b.idleMs - a.idleMs;
  return all > 0 ? Math.round((active / all) * 1000) / 1000 : undefined;
}

/** The share of the CFS periods between two samples in which the process was throttled. */
function throttled(a: CpuLimitStat | undefined, b: CpuLimitStat | undefined): number | undefined {
  if (!a || !b) return undefined;
  const periods = b.periods - a.periods;
  // No periods: no quota (--pod-cpu 0), so no share to give.
  return periods > 0 ? Math.round(((b.throttledPeriods - a.throttledPeriods) / periods) * 1000) / 1000 : undefined;
}

function podCpu(text: string): number {
  const n = Number(text);
  if (!(n >= 0) || n > 1) throw new Error(`--pod-cpu ${text}: a share of the check thread's one core, at most 1; 0: a cgroup of its own without a limit`);
  return n;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      keys: { type: "string", default: "100000" },
      rounds: { type: "string", default: "3" },
      "max-seconds": { type: "string", default: "6" },
      "rate-seconds": { type: "string", default: "10" },
      "rate-share": { type: "string", default: "0.5" },
      variants: { type: "string", default: "off,sqlite,postgres" },
      concurrency: { type: "string", default: String(LOAD.concurrency) },
      connections: { type: "string", default: String(LOAD.connections) },
      floating: { type: "boolean", default: false },
      "writer-core": { type: "string", default: "client" },
      "database-nice": { type: "string", default: "0" },
      "database-idle": { type: "boolean", default: false },
      "pod-cpu": { type: "string" },
      together: { type: "boolean", default: false },
    },
  });
  const writerCore = values["writer-core"];
  if (writerCore !== "client" && writerCore !== "checks") throw new Error(`--writer-core ${writerCore}: client or checks`);
  const res = await runAnalyticsCheckBench({
    keys: Number(values.keys),
    rounds: Number(values.rounds),
    maxSeconds: Number(values["max-seconds"]),
    rateSeconds: Number(values["rate-seconds"]),
    rateShare: Number(values["rate-share"]),
    variants: values.variants.split(",") as AnalyticsVariant[],
    concurrency: Number(values.concurrency),
    connections: Number(values.connections),
    floating: values.floating,
    writerCore,
    databaseNice: Number(values["database-nice"]),
    databaseIdle: values["database-idle"],
    ...(values["pod-cpu"] !== undefined ? { podCpu: podCpu(values["pod-cpu"]) } : {}),
    together: values.together,
    log: (s) => { console.error(`[analytics-check] ${s}`); },
  });
  console.log(JSON.stringify(res, null, 2));
}
