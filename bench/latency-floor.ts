// How much of the check path's latency tail is the load generator's: one fixed
// rate (about half of what keyward sustains here), ghz with 16, 8 and 4 workers,
// against the grpc-go null server, the null server on keyward's HTTP/2 and
// keyward with 100k keys, server on core 1, ghz on core 0 as in bench/check.ts.
// ghz paces its calls over its workers on one core; the fewer workers, the less
// its own scheduling adds to the tail, and the sooner a stalled server would make
// it send late (coordinated omission: a stall longer than workers / rate delays
// sends, and those calls' latency is then measured from the late send). The
// same ghz settings against a server that does nothing show the floor.
//
//   node bench/latency-floor.ts [--rps 4700] [--seconds 20] [--workers 16,8,4]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { LOAD, standardTargets, startTarget } from "./check.ts";
import { requestMix } from "./lib/fixture.ts";
import { ghz, writeDataFile, type LoadResult } from "./lib/ghz.ts";
import { waitQuiet } from "./lib/proc.ts";

export interface FloorRun {
  server: string;
  workers: number;
  load: LoadResult;
}

export const FLOOR_TARGETS = ["go-null", "null-keyward", "authz-100k"];

export async function latencyFloor(rps: number, workers: number[], seconds: number, log: (s: string) => void): Promise<FloorRun[]> {
  const targets = standardTargets();
  const out: FloorRun[] = [];
  const dir = mkdtempSync(join(tmpdir(), "keyward-floor-"));
  try {
    const dataFile = writeDataFile(dir, "requests", requestMix(100_000, 1000).requests);
    for (const name of FLOOR_TARGETS) {
      const t = targets[name];
      if (!t) throw new Error(`unknown target ${name}`);
      const srv = await startTarget(t);
      try {
        const base = { port: srv.port, dataFile, connections: LOAD.connections, cpus: t.ghzCpus };
        await ghz({ ...base, concurrency: LOAD.concurrency, seconds: LOAD.warmupSeconds, rps: 0 }, join(dir, "ghz.json"));
        for (const w of workers) {
          await waitQuiet(log);
          const load = await ghz({ ...base, concurrency: w, seconds, rps }, join(dir, "ghz.json"));
          log(`${t.name}, ${w} ghz workers at ${rps} rps: ${load.rps} rps, p50 ${load.p50Ms} p99 ${load.p99Ms} p99.9 ${load.p999Ms} ms`);
          out.push({ server: t.name, workers: w, load });
        }
      } finally {
        await srv.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { rps: { type: "string", default: "4700" }, seconds: { type: "string", default: "20" }, workers: { type: "string", default: "16,8,4" } } });
  const runs = await latencyFloor(Number(values.rps), values.workers.split(",").map(Number), Number(values.seconds), (s) => {
    console.error(`[floor] ${s}`);
  });
  console.log(JSON.stringify(runs, null, 2));
}
