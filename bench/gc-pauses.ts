// GC pauses under a fixed load: keyward's server (100k keys) with `--trace-gc`,
// pinned to core 1, ghz at a fixed rate on core 0; pauses are read from V8's
// trace lines and set beside the latencies ghz saw. Run once with V8's defaults and once
// per V8 flag set under test (the young generation's semi-space size).
//
//   node bench/gc-pauses.ts [--rps 4500] [--seconds 10] [--flags="--max-semi-space-size=2"] [--transport grpc-js]
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { LOAD } from "./check.ts";
import { requestMix } from "./lib/fixture.ts";
import { ghz, writeDataFile, type LoadResult } from "./lib/ghz.ts";
import { repoRoot } from "./lib/proc.ts";
import type { GrpcTransport } from "../src/authz/ext-authz-grpc.ts";

export interface GcRun {
  nodeFlags: string[];
  /** The gRPC server under the check path (--grpc-transport). */
  transport: GrpcTransport;
  keys: number;
  load: LoadResult;
  pauses: Record<string, { count: number; medianMs: number; maxMs: number; totalMs: number }>;
  /**
   * Bytes allocated in the young generation per call while measuring: what each scavenge
   * found in use before it, less what the one before left, summed, over the calls made.
   */
  youngBytesPerCall?: number;
}

export async function gcRun(nodeFlags: string[], keys: number, rps: number, seconds: number, transport: GrpcTransport = "keyward"): Promise<GcRun> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-gc-"));
  const args = ["-c", "1", process.execPath, "--trace-gc", ...nodeFlags, join(repoRoot, "bench/servers/server.ts"), "--mode", "authz", "--keys", String(keys), "--transport", transport];
  const child = spawn("taskset", args, { stdio: ["pipe", "pipe", "ignore"] });
  const pauses: { kind: string; ms: number }[] = [];
  let measuring = false;
  let lastAfterMb: number | undefined;
  let allocatedMb = 0;
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once("exit", (code) => {
        reject(new Error(`server exited with ${String(code)}`));
      });
      createInterface({ input: child.stdout }).on("line", (l) => {
        if (l.startsWith("READY ")) resolve(Number(l.slice(6)));
        // e.g. "[123:0x...]  4512 ms: Scavenge 180.3 (200.1) -> 175.2 (201.1) MB, pooled: 0 MB, 23.61 / 0.00 ms  (average mu = ...)"
        const m = /: (Scavenge|Mark-Compact|Minor Mark-Sweep|Mark-Sweep)\b.*?([\d.]+) \/ [\d.]+ ms/.exec(l);
        if (m && measuring) pauses.push({ kind: m[1]!, ms: Number(m[2]) });
        const heap = /: (?:Scavenge|Mark-Compact|Minor Mark-Sweep|Mark-Sweep)\b\S* ([\d.]+) \([\d.]+\) -> ([\d.]+) \(/.exec(l);
        if (heap) {
          if (measuring && lastAfterMb !== undefined) allocatedMb += Number(heap[1]) - lastAfterMb;
          lastAfterMb = Number(heap[2]);
        }
      });
    });
    const dataFile = writeDataFile(dir, "requests", requestMix(keys, 1000).requests);
    const base = { port, dataFile, connections: LOAD.connections, cpus: "0" };
    await ghz({ ...base, concurrency: LOAD.concurrency, seconds: LOAD.warmupSeconds, rps: 0 }, join(dir, "ghz.json"));
    measuring = true;
    const load = await ghz({ ...base, concurrency: LOAD.halfLoadConcurrency, seconds, rps }, join(dir, "ghz.json"));
    measuring = false;
    const by: GcRun["pauses"] = {};
    const groups: Record<string, number[]> = {};
    for (const p of pauses) (groups[p.kind] ??= []).push(p.ms);
    for (const [k, v] of Object.entries(groups)) {
      v.sort((a, b) => a - b);
      by[k] = { count: v.length, medianMs: v[Math.floor(v.length / 2)]!, maxMs: v[v.length - 1]!, totalMs: Math.round(v.reduce((a, b) => a + b, 0)) };
    }
    const calls = load.rps * seconds;
    return { nodeFlags, transport, keys, load, pauses: by, youngBytesPerCall: Math.round((allocatedMb * 2 ** 20) / calls) };
  } finally {
    child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      rps: { type: "string", default: "4500" },
      seconds: { type: "string", default: "10" },
      keys: { type: "string", default: "100000" },
      flags: { type: "string", default: "" },
      transport: { type: "string", default: "keyward" },
    },
  });
  const flags = values.flags.split(" ").filter(Boolean);
  console.log(JSON.stringify(await gcRun(flags, Number(values.keys), Number(values.rps), Number(values.seconds), values.transport as GrpcTransport), null, 2));
}
