// A CPU profile of the check path: keyward's server (100k keys) under ghz load,
// run with `node --cpu-prof`, reduced to where the time goes — gRPC transport (HTTP/2, HPACK),
// protobuf decode and encode, hashing, lookup, policy match, the check itself,
// the response, metrics, logging, GC.
//
//   node bench/profile.ts [--keys 100000] [--seconds 15]
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { requestMix } from "./lib/fixture.ts";
import { ghz, writeDataFile, type LoadResult } from "./lib/ghz.ts";
import { startServer } from "./lib/proc.ts";
import { chartNodeOptions, LOAD } from "./check.ts";

export interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
export interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  keys: number;
  load: LoadResult;
  sampledMs: number;
  /** Share of busy (non-idle) time, by category, self time. */
  categories: { category: string; percent: number }[];
  /** Inclusive share of busy time of the check path's own steps. */
  inclusive: { what: string; percent: number }[];
  top: { fn: string; where: string; percent: number }[];
}

const CATEGORIES: [string, (f: CallFrame) => boolean][] = [
  ["idle", (f) => f.functionName === "(idle)"],
  ["GC", (f) => f.functionName === "(garbage collector)"],
  ["protobuf decode (protobufjs)", (f) => /\$decode$|\$toObject$|^(decode|toObject)$/.test(f.functionName) || /protobufjs\/src\/(reader|converter)/.test(f.url)],
  ["protobuf encode (protobufjs)", (f) => /\$encode$|\$fromObject$|^(encode|fromObject)$/.test(f.functionName) || /protobufjs\/src\/writer/.test(f.url)],
  ["sha256 (node:crypto)", (f) => /internal\/crypto\/hash/.test(f.url) || /^(createHash|Hash|digest|update)$/.test(f.functionName)],
  ["key index lookup", (f) => f.url.endsWith("src/index/keys.ts")],
  ["policy match", (f) => f.url.endsWith("src/policy/policy.ts")],
  ["check logic (check, credentials, front)", (f) => /src\/authz\/(check|credentials|front)\.ts$/.test(f.url)],
  ["limits", (f) => f.url.includes("src/limits/")],
  ["request/response mapping (check-messages.ts, response.ts, response-cache.ts)", (f) => /src\/authz\/(check-messages|response|response-cache)\.ts$/.test(f.url)],
  ["decision bookkeeping (decisions.ts onDecision)", (f) => /src\/authz\/(decisions|service)\.ts$|bench\/servers\/server\.ts$/.test(f.url)],
  ["metrics (prom-client)", (f) => f.url.includes("prom-client")],
  ["logging (log.ts, JSON.stringify, stderr)", (f) => f.url.endsWith("src/log.ts") || f.functionName === "stringify" || /internal\/(streams|fs)/.test(f.url)],
  ["gRPC server (grpc-js)", (f) => f.url.includes("@grpc/grpc-js")],
  ["HPACK (src/h2/hpack.ts)", (f) => f.url.endsWith("src/h2/hpack.ts")],
  ["keyward's HTTP/2 and gRPC server (src/h2, src/grpc, ext-authz-grpc.ts)", (f) => /src\/(h2|grpc)\/|src\/authz\/ext-authz-grpc\.ts$/.test(f.url)],
  ["decode CheckRequest (decode.ts)", (f) => f.url.endsWith("src/authz/decode.ts")],
  ["HTTP/2 and sockets (node internals)", (f) => /internal\/(http2|stream_base_commons|net|timers|async_hooks|process\/task_queues)|^node:(http2|net)/.test(f.url) || (f.url === "" && /^(writev|writeBuffer|writeUtf8String|onStreamRead|emit|nextTick|respond|utf8Slice)$/.test(f.functionName))],
  ["other node internals", (f) => f.url.startsWith("node:")],
  ["(program) — native, not attributed", (f) => f.functionName === "(program)"],
];

function categoryOf(f: CallFrame): string {
  for (const [name, test] of CATEGORIES) if (test(f)) return name;
  return "other";
}

const short = (url: string): string => url.replace(/^file:\/\/.*?node_modules\//, "").replace(/^file:\/\/.*?\/(src|bench)\//, "$1/");

/** Self time per node, counting only samples taken between `from` and `to` (µs, the profile's clock). */
export function summarizeProfile(p: CpuProfile, from = -Infinity, to = Infinity): Omit<ProfileSummary, "keys" | "load"> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    const d = p.timeDeltas[i] ?? 0;
    t += d;
    if (t < from || t > to) continue;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + d);
  }
  let total = 0;
  let idle = 0;
  for (const [id, t] of self) {
    total += t;
    if (byId.get(id)?.callFrame.functionName === "(idle)") idle += t;
  }
  const busy = total - idle;
  const cats = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const [id, t] of self) {
    const f = byId.get(id)!.callFrame;
    const c = categoryOf(f);
    if (c === "idle") continue;
    cats.set(c, (cats.get(c) ?? 0) + t);
    const k = `${f.functionName || "(anonymous)"}\u0000${short(f.url)}:${f.lineNumber + 1}`;
    fns.set(k, (fns.get(k) ?? 0) + t);
  }
  // Inclusive time of named steps: a node counts once even when recursive.
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const steps: [string, (f: CallFrame) => boolean][] = [
    ["Checker.check (whole decision)", (f) => f.functionName === "check" && f.url.endsWith("src/authz/check.ts")],
    ["toCheckInput (request to CheckInput)", (f) => f.functionName === "toCheckInput"],
    ["toCheckResponse (Decision to message)", (f) => f.functionName === "toCheckResponse"],
    ["onDecision (metrics + log line)", (f) => f.functionName === "onDecision" || (f.functionName === "" && /decisions\.ts$/.test(f.url))],
    ["sha256 digest (keyDigest)", (f) => f.functionName === "keyDigest"],
    ["KeyIndex.lookup", (f) => f.functionName === "lookup" && f.url.endsWith("src/index/keys.ts")],
    ["PolicyTable.match", (f) => f.functionName === "match" && f.url.endsWith("src/policy/policy.ts")],
    ["findKey", (f) => f.functionName === "findKey"],
    ["decode CheckRequest (decodeCheckRequest)", (f) => f.functionName === "decodeCheckRequest"],
    ["encode CheckResponse (protobufjs, answers not cached)", (f) => f.functionName === "serialize" && f.url.includes("proto-loader")],
  ];
  const inclusive = steps.map(([what, test]) => {
    let t = 0;
    for (const [id, s] of self) {
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        if (test(byId.get(cur)!.callFrame)) {
          t += s;
          break;
        }
      }
    }
    return { what, percent: Math.round((t / busy) * 1000) / 10 };
  });
  const pctOf = (t: number): number => Math.round((t / busy) * 1000) / 10;
  return {
    sampledMs: Math.round(total / 1000),
    categories: [...cats].sort((a, b) => b[1] - a[1]).map(([category, t]) => ({ category, percent: pctOf(t) })),
    inclusive,
    top: [...fns]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 25)
      .map(([k, t]) => {
        const [fn, where] = k.split("\u0000");
        return { fn: fn!, where: where!, percent: pctOf(t) };
      }),
  };
}

export async function runProfile(keys: number, seconds: number, log: (s: string) => void): Promise<ProfileSummary> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-prof-"));
  try {
    const dataFile = writeDataFile(dir, "requests", requestMix(keys, 1000).requests);
    const srv = await startServer(["--mode", "authz", "--keys", String(keys)], {
      cpus: "1",
      nodeFlags: ["--max-old-space-size=8192", ...chartNodeOptions(), "--cpu-prof", "--cpu-prof-dir", dir, "--cpu-prof-interval", "250"],
    });
    let load: LoadResult;
    let from = 0;
    let to = 0;
    try {
      const base = { port: srv.port, dataFile, concurrency: LOAD.concurrency, connections: LOAD.connections, cpus: "0" };
      await ghz({ ...base, seconds: LOAD.warmupSeconds, rps: 0 }, join(dir, "ghz.json"));
      from = await srv.mark();
      load = await ghz({ ...base, seconds, rps: 0 }, join(dir, "ghz.json"));
      to = await srv.mark();
      log(`profile: ${load.rps} rps under --cpu-prof`);
    } finally {
      await srv.stop();
    }
    const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
    if (!file) throw new Error("no .cpuprofile written");
    const prof = JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile;
    return { keys, load, ...summarizeProfile(prof, from, to) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { keys: { type: "string", default: "100000" }, seconds: { type: "string", default: "15" } } });
  const res = await runProfile(Number(values.keys), Number(values.seconds), (s) => {
    console.error(`[profile] ${s}`);
  });
  console.log(JSON.stringify(res, null, 2));
}
