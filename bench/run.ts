// `make bench`: every keyward benchmark, results in bench/results/latest.{json,md}.
//
//   node bench/run.ts [--only index,micro,check,floor,interleaved,gc,apiserver,profile,floods,limits,envoy,startup,console]
//                     [--envoy-rate 1000] [--envoy-scenarios none,go-null,keyward-10,...] [--limits-kubeconfig F]
//                     [--startup-keys 10,10000,100000] [--startup-runs 3]
//                     [--analytics-rows 1000000] [--analytics-rounds 3]
//
// A section run alone replaces only its part of latest.json; the markdown is
// rewritten from the whole file. Loads go to 127.0.0.1 only and are bounded in time.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { operatorThroughput, revocationLag, seedBenchKeys, startControlPlane } from "./apiserver.ts";
import { chartNodeOptions, exampleGhzCommand, LOAD, nullReference, runCheckBench, runTarget, type CheckResult } from "./check.ts";
import { machine } from "./lib/machine.ts";
import { ghzPath, repoRoot, toolsBin } from "./lib/proc.ts";
import type { IndexPoint } from "./index-scale.ts";
import { renderMarkdown, type Results } from "./report.ts";
import type { GrpcTransport } from "../src/authz/ext-authz-grpc.ts";
import { runProfile } from "./profile.ts";
import { gcRun } from "./gc-pauses.ts";
import { latencyFloor } from "./latency-floor.ts";
import { interleaved } from "./interleaved.ts";
import { runCidrBench } from "./cidr.ts";
import { runDecodeBench } from "./decode.ts";
import { runFloods } from "./floods.ts";
import { runLimitsBench } from "./limits.ts";
import { ENVOY_ROUNDS, ENVOY_SCENARIOS, runEnvoyBench } from "./envoy.ts";
import { runLimitsGrpcBench } from "./limits-grpc.ts";
import { startupRows } from "./startup.ts";
import type { ViewCost } from "./views.ts";
import { runAnalyticsStoreBench } from "./analytics.ts";
import { runAnalyticsCheckBench } from "./analytics-check.ts";
import { runAnalyticsThreadBench } from "./analytics-thread.ts";
import { runConsoleBench } from "./console.ts";

const { values } = parseArgs({
  options: {
    only: { type: "string", default: "index,micro,check,floor,interleaved,gc,apiserver,profile,floods,limits,envoy,startup,analytics,console" },
    targets: { type: "string", default: "null,go-null,null-keyward,authz-10,authz-10k,authz-100k,authz-1m,authz-100k-grpc-js,workers-1,workers-2" },
    "watch-keys": { type: "string", default: "10000" },
    revocations: { type: "string", default: "200" },
    "operator-keys": { type: "string", default: "1000,10000" },
    "envoy-rate": { type: "string", default: "1000" },
    "envoy-scenarios": { type: "string", default: ENVOY_SCENARIOS },
    // A running control plane whose namespace bench-limits already holds the limits bench's keys
    // (node bench/limits-grpc.ts --kubeconfig F seeds it): the limits section skips starting and seeding one.
    "limits-kubeconfig": { type: "string" },
    "startup-keys": { type: "string", default: "10,10000,100000" },
    "startup-runs": { type: "string", default: "3" },
    "startup-authz-only-above": { type: "string", default: "Infinity" },
    // Rows seeded for the analytics store's query and day-drop times (10000000: 30 days × 10M rows).
    "analytics-rows": { type: "string", default: "1000000" },
    "analytics-rounds": { type: "string", default: "3" },
  },
});
const only = new Set(values.only.split(","));
const outDir = join(repoRoot, "bench", "results");
const jsonPath = join(outDir, "latest.json");
mkdirSync(outDir, { recursive: true });

const log = (s: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
};

const results: Results = existsSync(jsonPath) ? (JSON.parse(readFileSync(jsonPath, "utf8")) as Results) : { sections: {} };
ghzPath(); // fails early when ghz is not built
// `go install` builds report "dev" for --version; scripts/tools-build.sh records the version it installed.
const ghzVersion = `ghz ${existsSync(join(toolsBin(), ".ghz-version")) ? readFileSync(join(toolsBin(), ".ghz-version"), "utf8").trim() : "unknown"}`;
results.machine = { ...machine(), ghz: ghzVersion };
results.ghzCommand = exampleGhzCommand();
results.load = LOAD;

function save(): void {
  results.updatedAt = new Date().toISOString();
  writeFileSync(jsonPath, JSON.stringify(results, null, 2) + "\n");
  const md = renderMarkdown(results);
  writeFileSync(join(outDir, "latest.md"), md);
  // docs/benchmarks.md shows the latest tables between its results markers.
  const docs = join(repoRoot, "docs", "benchmarks.md");
  if (existsSync(docs)) {
    const text = readFileSync(docs, "utf8");
    const begin = "<!-- results:begin -->";
    const end = "<!-- results:end -->";
    const a = text.indexOf(begin);
    const b = text.indexOf(end);
    if (a !== -1 && b > a) {
      const body = md.replace(/^# .*\n/, "").replace(/^## /gm, "### ");
      writeFileSync(docs, `${text.slice(0, a + begin.length)}\n${body}\n${text.slice(b)}`);
    }
  }
}

const stamp = (): { at: string; loadAverage: string } => ({ at: new Date().toISOString(), loadAverage: machine().loadAverage });

if (only.has("index")) {
  log("index scale: 1k to 1M keys");
  const at = stamp();
  const r = spawnSync(process.execPath, ["--expose-gc", "--max-old-space-size=8192", join(repoRoot, "bench/index-scale.ts")], { stdio: ["ignore", "pipe", "inherit"], maxBuffer: 64 * 2 ** 20 });
  if (r.status !== 0) throw new Error(`index-scale exited with ${String(r.status)}`);
  const points = JSON.parse(r.stdout.toString()) as IndexPoint[];
  results.sections.index = { ...at, command: "node --expose-gc --max-old-space-size=8192 bench/index-scale.ts", points };
  save();
}

if (only.has("micro")) {
  log("decoding and hashing one request (bench/decode.ts)");
  results.sections.micro = { ...stamp(), command: "node bench/decode.ts", result: runDecodeBench() };
  log("matching a source address against allowedSources (bench/cidr.ts)");
  results.sections.cidr = { ...stamp(), command: "node bench/cidr.ts", result: runCidrBench() };
  save();
}

if (only.has("check")) {
  log(`check path: ${values.targets}`);
  const start = stamp();
  const res = await runCheckBench(values.targets.split(","), log);
  results.sections.check = { ...start, finishedLoadAverage: machine().loadAverage, command: `node bench/run.ts --only check --targets ${values.targets}`, results: res };
  save();
}

if (only.has("floor")) {
  // The generator's share of the tail, at about half of keyward's max RPS here.
  log("latency floor: ghz workers 16, 8, 4 at 4700 RPS");
  const start = stamp();
  const runs = await latencyFloor(4700, [16, 8, 4], LOAD.rateSeconds, log);
  results.sections.floor = { ...start, command: "node bench/latency-floor.ts --rps 4700 --seconds 20 --workers 16,8,4", runs };
  save();
}

if (only.has("interleaved")) {
  // The check path's p99 beside the two null servers', runs taking turns so the VM's drift
  // falls on all three alike: the figure to read when the machine is noisy.
  const rps = 4000;
  const targets = ["go-null", "null-keyward", "authz-100k"];
  log(`interleaved: ${targets.join(", ")} at ${rps} RPS, 5 rounds`);
  const start = stamp();
  const res = await interleaved({ targets, rps, rounds: 5, seconds: LOAD.rateSeconds, workers: LOAD.halfLoadConcurrency, keywardFlags: chartNodeOptions() }, log);
  results.sections.interleaved = { ...start, command: `node bench/interleaved.ts --targets ${targets.join(",")} --rps ${rps} --rounds 5`, rps, results: res };
  save();
}

if (only.has("gc")) {
  // At about half of what keyward sustains per core here: keyward's HTTP/2 server with V8's
  // defaults and with young-generation semi-spaces of 4 MB (the chart's) and 16 MB, then the
  // grpc-js transport with the chart's setting.
  const runs = [];
  const variants: [string[], GrpcTransport][] = [
    [[], "keyward"],
    [["--max-semi-space-size=4"], "keyward"],
    [["--max-semi-space-size=16"], "keyward"],
    [["--max-semi-space-size=4"], "grpc-js"],
  ];
  for (const [flags, transport] of variants) {
    log(`GC pauses at 4500 RPS, ${transport} transport, node flags: ${flags.join(" ") || "(none)"}`);
    runs.push(await gcRun(flags, 100_000, 4500, 10, transport));
  }
  results.sections.gc = { ...stamp(), command: "node bench/gc-pauses.ts --rps 4500 --seconds 10 [--flags=--max-semi-space-size=4] [--transport grpc-js]", runs };
  save();
}

if (only.has("apiserver")) {
  log("starting a local control plane (etcd + kube-apiserver)");
  const cp = await startControlPlane(log);
  try {
    const nWatch = Number(values["watch-keys"]);
    log(`seeding ${nWatch} ApiKeys for the watch-fed check run`);
    const seeded = await seedBenchKeys(cp.kubeconfig, "bench", nWatch, log);
    const start = stamp();
    const t0 = performance.now();
    const watch: CheckResult = await runTarget(
      {
        name: `keyward, ${nWatch / 1000}k keys through the apiserver watch (startAuthz)`,
        keys: nWatch,
        serverArgs: ["--mode", "authz", "--kubeconfig", cp.kubeconfig, "--namespace", "bench", "--expect-keys", String(nWatch)],
        serverCpus: "1",
        ghzCpus: "0",
        feed: "apiserver watch",
        nodeFlags: chartNodeOptions(),
      },
      log,
    );
    const nullMax = nullReference(results.sections.check?.results ?? [])?.maxRps;
    if (nullMax) watch.ratioToNull = Math.round((watch.maxRps / nullMax) * 1000) / 1000;
    results.sections.watchCheck = { ...start, seedSeconds: seeded.seconds, totalSeconds: Math.round((performance.now() - t0) / 1000), result: watch };
    save();

    log(`revocation lag: ${values.revocations} changes`);
    const rstart = stamp();
    const rev = await revocationLag(cp.kubeconfig, Number(values.revocations), log);
    results.sections.revocation = { ...rstart, result: rev };
    save();

    const ops = [];
    for (const n of values["operator-keys"].split(",").map(Number)) {
      log(`operator throughput: ${n} ApiKeys`);
      const ostart = stamp();
      ops.push({ ...ostart, ...(await operatorThroughput(cp.kubeconfig, n, log)) });
      results.sections.operator = { results: ops };
      save();
    }
  } finally {
    await cp.stop({ removeDir: true });
  }
}

if (only.has("profile")) {
  log("CPU profile of the check path (100k keys)");
  const start = stamp();
  const p = await runProfile(100_000, 15, log);
  results.sections.profile = { ...start, command: "node bench/profile.ts --keys 100000 --seconds 15", summary: p };
  save();
}

if (only.has("floods")) {
  log("HTTP/2 floods against the gRPC port, one attack at a time");
  const start = stamp();
  const rows = await runFloods({ log });
  results.sections.floods = { ...start, command: "node bench/floods.ts", rows };
  save();
}

if (only.has("limits")) {
  log("the limits store through gRPC: keyward authz over 100k keys with limits, memory, one redis-server, a 3-master Redis Cluster");
  const gstart = stamp();
  const kc = values["limits-kubeconfig"];
  const rows = await runLimitsGrpcBench({ keys: 100_000, log, ...(kc ? { kubeconfig: kc, seeded: true } : {}) });
  results.sections.limitsGrpc = { ...gstart, command: "node bench/limits-grpc.ts --keys 100000", keys: 100_000, rows };
  save();
  log("the limits store in process: memory, one redis-server, a 3-master Redis Cluster (100k keys with limits)");
  const start = stamp();
  const r = await runLimitsBench({ keys: 100_000, seconds: 5, log });
  results.sections.limits = { ...start, command: "node bench/limits.ts --keys 100000 --seconds 5", ...r };
  save();
}

if (only.has("envoy")) {
  // HTTP through a real Envoy: no authorization, ext_authz to the grpc-go null server, to keyward,
  // and Envoy's own api_key_auth filter; rounds taking turns, medians over ENVOY_ROUNDS rounds.
  const rate = Number(values["envoy-rate"]);
  log(`through Envoy (vegeta): ${values["envoy-scenarios"]}, fixed rate ${rate} rps, ${ENVOY_ROUNDS} rounds`);
  const start = stamp();
  const r = await runEnvoyBench({ scenarios: values["envoy-scenarios"].split(","), fixedRate: rate, seconds: 10, runs: ENVOY_ROUNDS }, log);
  results.sections.envoy = { ...start, finishedLoadAverage: machine().loadAverage, command: `node bench/envoy.ts --rate ${rate} --seconds 10 --runs ${ENVOY_ROUNDS}`, ...r };
  save();
}

if (only.has("startup")) {
  const keys = values["startup-keys"];
  log("what each watch's view of an ApiKey costs per key (bench/views.ts)");
  const v = spawnSync(process.execPath, ["--expose-gc", join(repoRoot, "bench/views.ts")], { stdio: ["ignore", "pipe", "inherit"] });
  if (v.status !== 0) throw new Error(`views exited with ${String(v.status)}`);
  const views = JSON.parse(v.stdout.toString()) as ViewCost[];
  log(`start-up and idle memory: authz, operator, run at ${keys} keys`);
  const cp = await startControlPlane(log);
  try {
    const start = stamp();
    const authzOnlyAbove = Number(values["startup-authz-only-above"]);
    const r = await startupRows({ kubeconfig: cp.kubeconfig, keys: keys.split(",").map(Number), roles: ["authz", "operator", "run"], runs: Number(values["startup-runs"]), authzOnlyAbove, etcdUrl: cp.etcdUrl, log });
    const command = `node bench/startup.ts --keys ${keys} --runs ${values["startup-runs"]}${Number.isFinite(authzOnlyAbove) ? ` --authz-only-above ${authzOnlyAbove}` : ""}`;
    results.sections.startup = { ...start, command, ...r, views };
    save();
  } finally {
    await cp.stop({ removeDir: true });
  }
}

if (only.has("analytics")) {
  // The store's write rate, size, queries and day drop on SQLite and PostgreSQL, then the
  // check path with analytics off, into SQLite and into PostgreSQL, runs taking turns.
  const rows = Number(values["analytics-rows"]);
  const rounds = Number(values["analytics-rounds"]);
  const start = stamp();
  const store = await runAnalyticsStoreBench(["sqlite", "postgres"], { rows, writeRows: 100_000, keys: 1000, repeat: 3 }, log);
  // events: the check event alone (usage makes it anyway, so it stands for keyward with its store
  // off); the store's writes on their own thread, as keyward runs them. Each server is a pod of
  // 0.15 CPU (a CFS quota), so that keyward, not the client, runs out, and the four run each
  // round's closed loop at once, so that the machine's drift falls on all alike (ADR 75).
  const check = await runAnalyticsCheckBench({ keys: 100_000, rounds: Math.max(rounds, 7), maxSeconds: 6, rateSeconds: 5, rateShare: 0.1, variants: ["off", "events", "sqlite", "postgres"], concurrency: LOAD.concurrency, connections: LOAD.connections, podCpu: 0.15, together: true, writerCore: "checks", log });
  // The same without a CPU limit: each server in a cgroup of its own, the four sharing core 1 by
  // equal weights, as pods without limits.cpu on a full node; rows are shed while the check
  // thread waits for the CPU (ADR 76).
  const checkShared = await runAnalyticsCheckBench({ keys: 100_000, rounds: Math.max(rounds, 5), maxSeconds: 6, rateSeconds: 5, rateShare: 0.1, variants: ["off", "events", "sqlite", "postgres"], concurrency: LOAD.concurrency, connections: LOAD.connections, podCpu: 0, together: true, writerCore: "checks", log });
  const threadVariants = await runAnalyticsThreadBench({ keys: 100_000, checks: 100_000, rounds, variants: ["off", "events", "sqlite", "postgres", "sqlite-inline", "postgres-inline"], log });
  const thread = { keys: 100_000, checks: 100_000, rounds, variants: threadVariants };
  const command = `node bench/run.ts --only analytics --analytics-rows ${rows} --analytics-rounds ${rounds}`;
  results.sections.analytics = { ...start, finishedLoadAverage: machine().loadAverage, command, store, check, checkShared, thread };
  save();
}
if (only.has("console")) {
  log("the console in headless Chromium: keys page at 10,000 keys, key page over 90 days");
  const start = stamp();
  const r = await runConsoleBench({ keys: 10_000, days: 90, runs: 5 }, log);
  results.sections.console = { ...start, command: "node bench/console.ts --keys 10000 --days 90 --runs 5", ...r };
  save();
}

log(`wrote ${jsonPath} and latest.md`);
