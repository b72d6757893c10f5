// The analytics rows' cost on the thread answering checks, this tree against another checkout,
// in one process: keyward's check handler in process (bench/check-alloc.ts) with three
// listeners taking turns round after round: the check's event alone (`events`, what usage makes
// anyway), the SQLite store on its writer thread as the other checkout makes rows and hands them
// over (`base`), and as this tree does (`head`). Each variant has its own handler, index and
// store; the writer threads are moved to core 0 (--writers-core). CPU time of this thread per
// check (the median of the rounds), so a busy machine, which moves bench/analytics-thread.ts's
// separate processes by ±10%, moves the three variants alike.
//
//   taskset -c 1 node bench/analytics-rows-paired.ts --base DIR [--keys 10000] [--checks 50000] [--rounds 6] [--writers-core 0]
//
// --writers-core 1: the writer threads share the checks' core, where at their nice (19 by
// default) they get a sliver of it: each store falls behind, its queue stays full and drops its
// oldest rows, as at saturation in bench/analytics-check.ts. Every waiting row then outlives the
// young generation's collections: what a row costs the check thread in that state.
//
// DIR: a checkout of the commit to compare with (`git worktree add DIR COMMIT`), with its
// node_modules (a symlink to this tree's will do).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setImmediate as turn } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { Registry } from "prom-client";
import { WRITER_THREAD_NAME } from "../src/analytics/writer-thread.ts";
import { silentLogger } from "../src/log.ts";
import { handler } from "./check-alloc.ts";
import { analyticsListener } from "./lib/analytics-listener.ts";
import { run, threadsNamed } from "./lib/proc.ts";
import { median } from "./lib/stats.ts";

const { values } = parseArgs({ options: { base: { type: "string" }, keys: { type: "string", default: "10000" }, checks: { type: "string", default: "50000" }, rounds: { type: "string", default: "6" }, "writers-core": { type: "string", default: "0" } } });
if (!values.base) throw new Error("--base DIR: a checkout of the commit to compare with");
const keys = Number(values.keys);
const checks = Number(values.checks);
const rounds = Number(values.rounds);
const baseListener = ((await import(pathToFileURL(join(values.base, "bench/lib/analytics-listener.ts")).href)) as { analyticsListener: typeof analyticsListener }).analyticsListener;
const dir = mkdtempSync(join(tmpdir(), "keyward-bench-rows-paired-"));

const variant = async (name: string, listener: typeof analyticsListener, kind: string) => {
  const registry = new Registry();
  const l = await listener(kind, { keys, registry, log: silentLogger, sqlitePath: join(dir, `${name}.sqlite`), postgresUrl: "", writerThread: true, shedding: false });
  const h = handler(keys, l);
  const sum = async (metric: string): Promise<number> => {
    const m = registry.getSingleMetric(metric);
    return m ? (await m.get()).values.reduce((n, v) => n + v.value, 0) : 0;
  };
  /** Every row made was written or dropped: the queue is waited out. */
  const drained = async (): Promise<void> => {
    while ((await sum("keyward_analytics_rows_written_total")) + (await sum("keyward_analytics_rows_dropped_total")) < (await sum("keyward_analytics_rows_total"))) await new Promise((r) => setTimeout(r, 10));
  };
  return { name, h, drained };
};

try {
  const variants = [await variant("events", analyticsListener, "events"), await variant("base", baseListener, "sqlite"), await variant("head", analyticsListener, "sqlite")];
  for (const tid of threadsNamed(process.pid, WRITER_THREAD_NAME)) await run("taskset", ["-p", "-c", values["writers-core"], String(tid)]);
  let at = 0;
  const many = async (v: (typeof variants)[number], n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      v.h.check(v.h.bodies[at++ % v.h.bodies.length]!);
      if (i % 64 === 63) await turn();
    }
  };
  // Every key's first request and the JIT's compilations before measuring.
  for (const v of variants) {
    await many(v, 2 * v.h.bodies.length);
    await v.drained();
  }
  const runs: Record<string, number[]> = {};
  for (let r = 0; r < rounds; r++) {
    for (const v of variants) {
      const c0 = process.threadCpuUsage();
      await many(v, checks);
      await v.drained();
      const c = process.threadCpuUsage(c0);
      (runs[v.name] ??= []).push(Math.round(((c.user + c.system) / checks) * 100) / 100);
    }
  }
  const out = Object.entries(runs).map(([name, xs]) => ({ variant: name, checkThreadMicrosPerCheck: median(xs), rounds: xs }));
  console.log(JSON.stringify(out, null, 2));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
