// Drives ghz (github.com/bojand/ghz), an independent Go load generator, at a
// server on 127.0.0.1 and reduces its per-request details to percentiles.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PROTO_ROOT, AUTHZ_PROTO } from "../../src/authz/proto.ts";
import { envoyIncludeDirs } from "../../src/util/envoy-protos.ts";
import type { CheckRequestMessage } from "../../src/authz/proto.ts";
import { ghzPath, pinned, run } from "./proc.ts";

/**
 * ghz's environment: its Go garbage collector off (GOGC=off). On the one core it is pinned to,
 * ghz's own collections otherwise stop its clock-keeping goroutines for milliseconds and add
 * that to the latencies it reports — a p99 of 5 ms against a grpc-go server that answers in
 * 0.3 ms. A run lasts at most LOAD's longest duration, so the heap it keeps stays bounded.
 */
export const GHZ_ENV: Record<string, string> = { GOGC: "off" };

export interface LoadResult {
  /** Requests per second ghz completed (all responses, whatever the decision). */
  rps: number;
  count: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** ghz's errors by message; calls still in flight when the duration ends are cancelled and count here. */
  errorKinds?: Record<string, number>;
  /** Server CPU seconds per wall second during the run (1.0 = one core busy). */
  serverCpu?: number;
  /** Answers by their status code (keyward-bench-go-load's runs). */
  codes?: Record<string, number>;
  /** The load generator's own CPU per completed call, µs (keyward-bench-go-load's runs). */
  clientCpuMicrosPerCall?: number;
}

export interface LoadOptions {
  port: number;
  dataFile: string;
  seconds: number;
  /** Requests per second; 0 = as fast as the server answers (closed loop). */
  rps: number;
  concurrency: number;
  connections: number;
  /** CPUs for ghz itself (taskset). */
  cpus?: string;
  /** ghz --async: send at the rate without waiting for answers (an open loop). */
  async?: boolean;
}

export function writeDataFile(dir: string, name: string, requests: CheckRequestMessage[]): string {
  const p = join(dir, `${name}.json`);
  writeFileSync(p, JSON.stringify(requests));
  return p;
}

function pct(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;

interface GhzReport {
  count: number;
  rps: number;
  details?: { latency: number; error?: string; status: string }[];
  errorDistribution?: Record<string, number>;
}

/** Builds the ghz command line; recorded in the results so a run can be repeated by hand. */
export function ghzArgs(o: LoadOptions, outFile: string): string[] {
  const imports = [PROTO_ROOT, ...envoyIncludeDirs()].join(",");
  return [
    "--insecure",
    "--proto",
    join(PROTO_ROOT, AUTHZ_PROTO),
    "--import-paths",
    imports,
    "--call",
    "envoy.service.auth.v3.Authorization/Check",
    "--data-file",
    o.dataFile,
    "--duration",
    `${o.seconds}s`,
    "--concurrency",
    String(o.concurrency),
    "--connections",
    String(o.connections),
    "--rps",
    String(Math.round(o.rps)),
    ...(o.async ? ["--async"] : []),
    "--timeout",
    "5s",
    "--format",
    "json",
    "--output",
    outFile,
    `127.0.0.1:${o.port}`,
  ];
}

export async function ghz(o: LoadOptions, outFile: string): Promise<LoadResult> {
  const [cmd, args] = pinned(o.cpus, ghzPath(), ghzArgs(o, outFile));
  await run(cmd, args, { timeoutMs: (o.seconds + 60) * 1000, env: GHZ_ENV });
  const { readFileSync } = await import("node:fs");
  const rep = JSON.parse(readFileSync(outFile, "utf8")) as GhzReport;
  const ok = (rep.details ?? []).filter((d) => !d.error);
  const lat = Float64Array.from(ok.map((d) => d.latency / 1e6)).sort();
  writeFileSync(outFile, ""); // the per-request details are large; keep only the summary
  return {
    rps: round(rep.rps, 1),
    count: rep.count,
    errors: rep.count - ok.length,
    p50Ms: round(pct(lat, 50)),
    p99Ms: round(pct(lat, 99)),
    p999Ms: round(pct(lat, 99.9)),
    maxMs: round(lat[lat.length - 1] ?? NaN),
    errorKinds: rep.errorDistribution ?? {},
  };
}
