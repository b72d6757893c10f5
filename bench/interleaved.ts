// Check-path servers compared at one fixed rate, their runs interleaved: every server is
// started and warmed up first, then each round runs each server in turn (ghz on core 0,
// servers on core 1, as in bench/check.ts). A shared VM's speed drifts by the minute;
// taking turns spreads that drift over all the servers alike, so their p99s can be set side
// by side when the machine is too noisy for back-to-back runs to compare. Also the way to
// try Node.js options: a target written `authz-100k+--single-threaded` runs with those flags
// (space-separated) added to its own, so `authz-100k,authz-100k+--single-threaded` compares
// the two.
//
//   node bench/interleaved.ts [--targets go-null,null-keyward,authz-100k] [--rps 4000]
//                             [--rounds 5] [--seconds 20] [--workers 8]
//                             [--node-options="--max-semi-space-size=16"]  (keyward targets)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { LOAD, chartNodeOptions, medianByP99, standardTargets, startTarget } from "./check.ts";
import { requestMix } from "./lib/fixture.ts";
import { ghz, writeDataFile, type LoadResult } from "./lib/ghz.ts";
import type { ServerProc } from "./lib/proc.ts";

export interface InterleavedResult {
  server: string;
  runs: LoadResult[];
  /** The run with the median p99 (medianByP99). */
  median: LoadResult;
}

export interface InterleavedOptions {
  targets: string[];
  rps: number;
  rounds: number;
  seconds: number;
  workers: number;
  keywardFlags: string[];
}

export async function interleaved(o: InterleavedOptions, log: (s: string) => void): Promise<InterleavedResult[]> {
  const all = standardTargets(o.keywardFlags);
  const targets = o.targets.map((spec) => {
    const plus = spec.indexOf("+");
    const name = plus < 0 ? spec : spec.slice(0, plus);
    const t = all[name];
    if (!t) throw new Error(`unknown target ${name}; known: ${Object.keys(all).join(", ")}`);
    if (plus < 0) return t;
    if (t.program) throw new Error(`${name} is not a Node.js server; it takes no Node.js flags`);
    const extra = spec.slice(plus + 1).split(/\s+/).filter(Boolean);
    return { ...t, name: `${t.name} + ${extra.join(" ")}`, nodeFlags: [...(t.nodeFlags ?? []), ...extra] };
  });
  const dir = mkdtempSync(join(tmpdir(), "keyward-interleaved-"));
  const servers: ServerProc[] = [];
  try {
    const dataFile = writeDataFile(dir, "requests", requestMix(100_000, 1000).requests);
    for (const t of targets) {
      const srv = await startTarget(t);
      servers.push(srv);
      await ghz({ port: srv.port, dataFile, connections: LOAD.connections, cpus: t.ghzCpus, concurrency: LOAD.concurrency, seconds: LOAD.warmupSeconds, rps: 0 }, join(dir, "ghz.json"));
    }
    const runs = targets.map((): LoadResult[] => []);
    for (let r = 0; r < o.rounds; r++) {
      for (const [i, t] of targets.entries()) {
        const load = await ghz({ port: servers[i]!.port, dataFile, connections: LOAD.connections, cpus: t.ghzCpus, concurrency: o.workers, seconds: o.seconds, rps: o.rps }, join(dir, "ghz.json"));
        runs[i]!.push(load);
        log(`round ${r + 1}, ${t.name}: ${load.rps} rps, p50 ${load.p50Ms} p99 ${load.p99Ms} p99.9 ${load.p999Ms} ms`);
      }
    }
    return targets.map((t, i) => ({ server: t.name, runs: runs[i]!, median: medianByP99(runs[i]!) }));
  } finally {
    for (const s of servers) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      targets: { type: "string", default: "go-null,null-keyward,authz-100k" },
      rps: { type: "string", default: "4000" },
      rounds: { type: "string", default: "5" },
      seconds: { type: "string", default: "20" },
      workers: { type: "string", default: String(LOAD.halfLoadConcurrency) },
      "node-options": { type: "string" },
    },
  });
  const num = (name: string, v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
  const results = await interleaved(
    {
      targets: values.targets.split(","),
      rps: num("rps", values.rps),
      rounds: num("rounds", values.rounds),
      seconds: num("seconds", values.seconds),
      workers: num("workers", values.workers),
      keywardFlags: values["node-options"] !== undefined ? values["node-options"].split(/\s+/).filter(Boolean) : chartNodeOptions(),
    },
    (s) => { console.error(`[interleaved] ${s}`); },
  );
  for (const r of results) console.error(`[interleaved] ${r.server}: median p99 ${r.median.p99Ms} ms (${r.runs.map((l) => l.p99Ms).join(", ")})`);
  console.log(JSON.stringify(results, null, 2));
}
