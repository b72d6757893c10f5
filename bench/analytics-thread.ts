// The analytics rows' cost on the thread answering checks, counted in CPU time, in process:
// keyward's check handler without a socket (bench/check-alloc.ts: decode, check, encoded
// answer, decision metrics), every check with a valid key, and the analytics listener of each
// variant (bench/lib/analytics-listener.ts): off, events (the check's event alone, which usage
// makes anyway), sqlite and postgres (the store's writes on the keyward-writer thread), and
// sqlite-inline and postgres-inline (the writes on the check thread). Each variant is one child
// process pinned to core 1, its writer thread moved to core 0 (with PostgreSQL's server); the
// children take turns, round after round. A run is --checks checks, the event loop turning every
// 64, then the queue waited out (written + dropped = made): CPU is read per thread
// (process.threadCpuUsage for the check thread, /proc for the writer thread and the process), so
// the figures are CPU per check and per row, steady on a shared machine where the ghz runs of
// bench/analytics-check.ts are not.
//
//   node bench/analytics-thread.ts [--keys 100000] [--checks 100000] [--rounds 3]
//                                  [--variants off,events,sqlite,postgres,sqlite-inline,postgres-inline]
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setImmediate as turn } from "node:timers/promises";
import { parseArgs } from "node:util";
import { Registry } from "prom-client";
import { WRITER_THREAD_NAME } from "../src/analytics/writer-thread.ts";
import { silentLogger } from "../src/log.ts";
import { chartNodeOptions } from "./check.ts";
import { handler } from "./check-alloc.ts";
import { analyticsListener } from "./lib/analytics-listener.ts";
import { cpuSeconds, repoRoot, run, threadCpuSeconds, threadsNamed } from "./lib/proc.ts";
import { startPostgres, type PostgresCluster } from "../test/support/postgres.ts";
import { median } from "./lib/stats.ts";

export interface ThreadRun {
  checks: number;
  /** CPU µs per check of the thread answering checks. */
  checkThread: number;
  /** CPU µs per check of the whole process (every thread). */
  process: number;
  /** CPU µs per row made of the writer thread; undefined without one. */
  writerPerRow?: number;
  rows: { made: number; written: number; dropped: number };
}

export interface ThreadVariantResult {
  variant: string;
  runs: ThreadRun[];
  /** Medians over the rounds. */
  checkThread: number;
  process: number;
  writerPerRow?: number;
}

const round1 = (x: number): number => Math.round(x * 10) / 10;

async function rowCounts(registry: Registry): Promise<{ made: number; written: number; dropped: number }> {
  const sum = async (name: string): Promise<number> => {
    const m = registry.getSingleMetric(name);
    return m ? (await m.get()).values.reduce((n, v) => n + v.value, 0) : 0;
  };
  return { made: await sum("keyward_analytics_rows_total"), written: await sum("keyward_analytics_rows_written_total"), dropped: await sum("keyward_analytics_rows_dropped_total") };
}

/** The child: one variant's check handler, answering `run` lines on stdin with one JSON line each. */
async function child(variant: string, keys: number, checks: number, path: string, url: string): Promise<void> {
  const registry = new Registry();
  const [store = "off", writer = "thread"] = variant.split("-");
  const listener = store === "off" ? undefined : await analyticsListener(store, { keys, registry, log: silentLogger, sqlitePath: path, postgresUrl: url, writerThread: writer !== "inline", shedding: false });
  const { bodies, check } = handler(keys, listener);
  let at = 0;
  const many = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      check(bodies[at++ % bodies.length]!);
      if (i % 64 === 63) await turn();
    }
  };
  const drained = async (): Promise<{ made: number; written: number; dropped: number }> => {
    for (;;) {
      const r = await rowCounts(registry);
      if (r.written + r.dropped >= r.made) return r;
      await new Promise((res) => setTimeout(res, 10));
    }
  };
  // Every key's first request and the JIT's compilations before measuring.
  await many(2 * bodies.length);
  await drained();
  process.stdout.write("READY\n");
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() !== "run") continue;
    const tid = threadsNamed(process.pid, WRITER_THREAD_NAME)[0];
    const r0 = await rowCounts(registry);
    const c0 = process.threadCpuUsage();
    const p0 = cpuSeconds(process.pid);
    const w0 = tid !== undefined ? threadCpuSeconds(process.pid, tid) : 0;
    await many(checks);
    const r1 = await drained();
    const c1 = process.threadCpuUsage(c0);
    const p1 = cpuSeconds(process.pid);
    const w1 = tid !== undefined ? threadCpuSeconds(process.pid, tid) : 0;
    const made = r1.made - r0.made;
    const out: ThreadRun = {
      checks,
      checkThread: round1((c1.user + c1.system) / checks),
      process: round1(((p1 - p0) * 1e6) / checks),
      ...(tid !== undefined ? { writerPerRow: round1(((w1 - w0) * 1e6) / Math.max(1, made)) } : {}),
      rows: { made, written: r1.written - r0.written, dropped: r1.dropped - r0.dropped },
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  }
}

export async function runAnalyticsThreadBench(o: { keys: number; checks: number; rounds: number; variants: string[]; log: (s: string) => void }): Promise<ThreadVariantResult[]> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-bench-analytics-thread-"));
  let cluster: PostgresCluster | undefined;
  const children: { variant: string; ask: () => Promise<ThreadRun>; stop: () => void }[] = [];
  try {
    if (o.variants.some((v) => v.startsWith("postgres"))) {
      cluster = await startPostgres();
      const postmaster = readFileSync(join(cluster.dir, "data", "postmaster.pid"), "utf8").split("\n")[0]!;
      await run("taskset", ["-a", "-p", "-c", "0", postmaster]);
    }
    for (const variant of o.variants) {
      o.log(`analytics ${variant}: starting the check handler over ${o.keys} keys`);
      const argv = [...chartNodeOptions(), "--max-old-space-size=8192", join(repoRoot, "bench/analytics-thread.ts"), "--child", variant, "--keys", String(o.keys), "--checks", String(o.checks), "--path", join(dir, `${variant}.sqlite`), "--url", cluster?.url() ?? ""];
      const proc = spawn("taskset", ["-c", "1", process.execPath, ...argv], { stdio: ["pipe", "pipe", "inherit"], cwd: repoRoot });
      const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
      const next = async (): Promise<string> => {
        const r = await lines.next();
        if (r.done) throw new Error(`analytics ${variant}: the child exited`);
        return r.value;
      };
      if ((await next()) !== "READY") throw new Error(`analytics ${variant}: no READY`);
      for (const tid of threadsNamed(proc.pid!, WRITER_THREAD_NAME)) await run("taskset", ["-p", "-c", "0", String(tid)]);
      children.push({
        variant,
        ask: async () => {
          proc.stdin.write("run\n");
          return JSON.parse(await next()) as ThreadRun;
        },
        stop: () => proc.kill("SIGTERM"),
      });
    }
    const runs = children.map((): ThreadRun[] => []);
    for (let r = 0; r < o.rounds; r++) {
      for (const [i, c] of children.entries()) {
        const res = await c.ask();
        runs[i]!.push(res);
        o.log(`round ${r + 1}, analytics ${c.variant}: check thread ${res.checkThread} µs/check, process ${res.process} µs/check, writer ${res.writerPerRow ?? "-"} µs/row, rows ${JSON.stringify(res.rows)}`);
      }
    }
    return children.map((c, i) => {
      const rs = runs[i]!;
      const w = rs.map((x) => x.writerPerRow).filter((x): x is number => x !== undefined);
      return { variant: c.variant, runs: rs, checkThread: median(rs.map((x) => x.checkThread)), process: median(rs.map((x) => x.process)), ...(w.length ? { writerPerRow: median(w) } : {}) };
    });
  } finally {
    for (const c of children) c.stop();
    await cluster?.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      child: { type: "string" },
      keys: { type: "string", default: "100000" },
      checks: { type: "string", default: "100000" },
      rounds: { type: "string", default: "3" },
      variants: { type: "string", default: "off,events,sqlite,postgres,sqlite-inline,postgres-inline" },
      path: { type: "string", default: "" },
      url: { type: "string", default: "" },
    },
  });
  if (values.child) {
    await child(values.child, Number(values.keys), Number(values.checks), values.path, values.url);
    // stdin closed: done (the store's threads are not waited for).
    process.exit(0);
  } else {
    const res = await runAnalyticsThreadBench({ keys: Number(values.keys), checks: Number(values.checks), rounds: Number(values.rounds), variants: values.variants.split(","), log: (s) => { console.error(`[analytics-thread] ${s}`); } });
    console.log(JSON.stringify(res, null, 2));
  }
}
