// Drives keyward-bench-go-load (bench/clients/go-load): Check calls on grpc-go, in a closed loop
// or at a fixed rate,
// and go-control-plane's types, the requests encoded once up front and sent as bytes, so that
// one core of client can keep keyward's check thread busy. Its JSON report is checked here:
// a run with a failed call or an answer other than the one its request expects is refused,
// so a broken server cannot look fast.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CheckRequestMessage } from "../../src/authz/proto.ts";
import type { Kind } from "./fixture.ts";
import type { LoadResult } from "./ghz.ts";
import { pinned, run, toolPath } from "./proc.ts";

export const GO_LOAD_TOOL = "keyward-bench-go-load";

/** The google.rpc code each kind of request is answered with (src/check/reasons.ts). */
export const EXPECTED_CODE: Record<Kind, number> = { valid: 0, unknown: 16, scope_missing: 7 };

/** What keyward-bench-go-load prints when its time is up. */
export interface GoLoadReport {
  seconds: number;
  count: number;
  rps: number;
  /** Answers by their status code ("0" allowed, "16" unknown key, "7" scope missing, ...). */
  codes: Record<string, number>;
  /** Answers whose code is not the one their request expects. */
  unexpected: number;
  /** Calls that failed (gRPC status not OK); by message in errorKinds. */
  errors: number;
  errorKinds: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** The client's own CPU (user + system) over the run. */
  cpuSeconds: number;
  concurrency: number;
  connections: number;
}

export interface GoLoadOptions {
  port: number;
  /** writeLoadFile's file. */
  requestsFile: string;
  seconds: number;
  concurrency: number;
  connections: number;
  /** Calls started per second; 0 or absent: a closed loop. */
  rps?: number;
  /** CPUs for the client (taskset). */
  cpus?: string;
}

/** The client's requests file: each request with the code its answer must carry. */
export function writeLoadFile(dir: string, name: string, mix: { requests: CheckRequestMessage[]; order: Kind[] }): string {
  if (mix.requests.length !== mix.order.length) throw new Error(`requests (${mix.requests.length}) and kinds (${mix.order.length}) differ in number`);
  const p = join(dir, `${name}.json`);
  writeFileSync(p, JSON.stringify(mix.requests.map((request, i) => ({ request, expect: EXPECTED_CODE[mix.order[i]!] }))));
  return p;
}

const NUMBERS = ["seconds", "count", "rps", "unexpected", "errors", "p50Ms", "p99Ms", "p999Ms", "maxMs", "cpuSeconds", "concurrency", "connections"] as const;

/** Reads the client's stdout (its last line is the report). */
export function parseGoLoadReport(stdout: string): GoLoadReport {
  const last = stdout.trim().split("\n").at(-1) ?? "";
  let v: unknown;
  try {
    v = JSON.parse(last);
  } catch (e) {
    throw new Error(`${GO_LOAD_TOOL}: no JSON report in its output: ${JSON.stringify(last.slice(0, 200))}`, { cause: e });
  }
  if (typeof v !== "object" || v === null) throw new Error(`${GO_LOAD_TOOL}: the report is not an object`);
  const o = v as Record<string, unknown>;
  for (const k of NUMBERS) if (typeof o[k] !== "number" || !Number.isFinite(o[k])) throw new Error(`${GO_LOAD_TOOL}: the report's ${k} is not a number`);
  const counts = (k: string): Record<string, number> => {
    const m = o[k];
    if (typeof m !== "object" || m === null || Object.values(m).some((x) => typeof x !== "number")) throw new Error(`${GO_LOAD_TOOL}: the report's ${k} is not a map of counts`);
    return m as Record<string, number>;
  };
  return { ...(o as unknown as GoLoadReport), codes: counts("codes"), errorKinds: counts("errorKinds") };
}

const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;

/**
 * The run as a LoadResult, once it is shown sound: calls completed, none failed, every answer the
 * one its request expects. `clientCpuMicrosPerCall` is the client's CPU per completed call.
 */
export function checkedLoad(r: GoLoadReport): LoadResult {
  if (r.count === 0) throw new Error(`${GO_LOAD_TOOL}: no call completed in ${r.seconds} s`);
  if (r.errors > 0) throw new Error(`${GO_LOAD_TOOL}: ${r.errors} of ${r.count + r.errors} calls failed: ${JSON.stringify(r.errorKinds)}`);
  if (r.unexpected > 0) throw new Error(`${GO_LOAD_TOOL}: ${r.unexpected} of ${r.count} answers were not the ones their requests expect (codes ${JSON.stringify(r.codes)})`);
  return {
    rps: round(r.rps, 1),
    count: r.count,
    errors: 0,
    p50Ms: round(r.p50Ms),
    p99Ms: round(r.p99Ms),
    p999Ms: round(r.p999Ms),
    maxMs: round(r.maxMs),
    codes: r.codes,
    clientCpuMicrosPerCall: round((r.cpuSeconds / r.count) * 1e6, 2),
  };
}

/** The client's command line; recorded in the results so a run can be repeated by hand. */
export function goLoadArgs(o: GoLoadOptions): string[] {
  return ["-addr", `127.0.0.1:${o.port}`, "-requests", o.requestsFile, "-seconds", String(o.seconds), "-concurrency", String(o.concurrency), "-connections", String(o.connections), ...(o.rps ? ["-rps", String(Math.round(o.rps))] : [])];
}

export async function goLoad(o: GoLoadOptions): Promise<LoadResult> {
  const [cmd, args] = pinned(o.cpus, toolPath(GO_LOAD_TOOL), goLoadArgs(o));
  return checkedLoad(parseGoLoadReport(await run(cmd, args, { timeoutMs: (o.seconds + 60) * 1000 })));
}
