// Where `keyward authz`'s memory goes once it is Ready and idle: one start of the built output
// (as bench/startup.ts starts it: the image's environment, the chart's NODE_OPTIONS, a fresh
// analytics file) against keys already seeded by bench/startup.ts, then two full collections of
// the main isolate, and
//   - the RSS of each mapping kind of /proc/PID/smaps (anonymous, the node binary, glibc's heap),
//   - the V8 heap of every isolate, the main one and each worker thread's (process.report),
//   - the process's thread names, and the time and CPU to /readyz 200,
// once it has been idle for --idle-ms after its start's background work (untilIdle).
//
//   node bench/startup-memory.ts --kubeconfig FILE [--keys 10] [--runs 1] [--idle-ms 3000]
//
// With KEYWARD_ANALYTICS_STORE=off in the environment, the same without the store.
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chartNodeOptions } from "./check.ts";
import { imageApp, imageEnv } from "./lib/image-env.ts";
import { cpuSeconds, ownAnalyticsStore } from "./lib/proc.ts";
import { collectGarbage, get, inspectorSession, listenablePort, smapsResident, startupNamespace, untilIdle } from "./startup.ts";

interface HeapSpaces {
  /** MiB committed. */
  total: number;
  used: number;
  spaces: Record<string, number>;
}

export interface MemoryRun {
  readyMs: number;
  cpuToReadyS: number;
  /** How long the process went on working after Ready before it was idle (untilIdle). */
  busyAfterReadyMs: number;
  rssMiB: number;
  /** Resident MiB by mapping: `[anon]`, `[heap]`, the file's name for file mappings. */
  mappings: Record<string, number>;
  threads: string[];
  main: HeapSpaces;
  workers: HeapSpaces[];
}

const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;

/** Resident MiB of each mapping of /proc/PID/smaps, by the mapping's name (file mappings by their file's). */
function residentByMapping(pid: number): Record<string, number> {
  const kb = smapsResident(readFileSync(`/proc/${pid}/smaps`, "utf8"), (name) => name.split("/").pop() || "[anon]");
  return Object.fromEntries(
    Object.entries(kb)
      .map(([k, v]) => [k, (v ?? 0) / 1024] as const)
      .filter(([, v]) => v >= 0.5)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => [k, Math.round(v * 10) / 10]),
  );
}

interface ReportHeap {
  totalMemory: number;
  usedMemory: number;
  heapSpaces: Record<string, { memorySize: number }>;
}

const spaces = (h: ReportHeap): HeapSpaces => ({
  total: mib(h.totalMemory),
  used: mib(h.usedMemory),
  spaces: Object.fromEntries(Object.entries(h.heapSpaces).filter(([, v]) => v.memorySize > 0).map(([k, v]) => [k, mib(v.memorySize)])),
});

export async function memoryOnce(kubeconfig: string, keys: number, main: string, cwd: string, idleMs: number): Promise<MemoryRun> {
  const [metricsPort, grpcPort, inspectPort] = [await listenablePort(), await listenablePort(), await listenablePort()];
  const analytics = ownAnalyticsStore();
  const env: NodeJS.ProcessEnv = { ...process.env, ...imageEnv(), KEYWARD_ANALYTICS_SQLITE_PATH: analytics.path, NODE_DISABLE_COMPILE_CACHE: "1", NODE_OPTIONS: chartNodeOptions().join(" ") };
  const args = [`--inspect=127.0.0.1:${inspectPort}`, main, "authz", "--kubeconfig", kubeconfig, "--namespaces", startupNamespace(keys), "--metrics-address", `127.0.0.1:${metricsPort}`, "--grpc-address", `127.0.0.1:${grpcPort}`, "--http-auth-address", "", "--leader-elect=false", "--log-level", "warn"];
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "inherit"], cwd, env });
  const pid = child.pid!;
  try {
    const deadline = Date.now() + 300_000;
    while ((await get(`http://127.0.0.1:${metricsPort}/readyz`).catch(() => ({ status: 0 }))).status !== 200) {
      if (child.exitCode !== null) throw new Error(`keyward authz exited ${child.exitCode} during start-up`);
      if (Date.now() > deadline) throw new Error("not ready within 300 s");
      await new Promise((r) => setTimeout(r, 20));
    }
    const readyMs = Math.round(performance.now() - t0);
    const cpuToReadyS = Math.round(cpuSeconds(pid) * 100) / 100;
    // The start's background work (the analytics key records) done, then `idleMs` more.
    const busyAfterReadyMs = await untilIdle(pid, 120_000);
    await new Promise((r) => setTimeout(r, idleMs));
    await collectGarbage(inspectPort);
    const { call, close } = await inspectorSession(inspectPort);
    let report: { main: ReportHeap; workers: ReportHeap[] };
    try {
      const expression = "(() => { const r = process.report.getReport(); return JSON.stringify({ main: r.javascriptHeap, workers: r.workers.map((w) => w.javascriptHeap) }); })()";
      const res = (await call("Runtime.evaluate", { expression, returnByValue: true })) as { result?: { value?: string } };
      report = JSON.parse(res.result?.value ?? "{}") as typeof report;
    } finally {
      close();
    }
    const rssMiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
    const threads = readdirSync(`/proc/${pid}/task`).map((t) => readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim());
    return { readyMs, cpuToReadyS, busyAfterReadyMs, rssMiB: Math.round(rssMiB * 10) / 10, mappings: residentByMapping(pid), threads, main: spaces(report.main), workers: report.workers.map(spaces) };
  } finally {
    if (child.exitCode === null) {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
    analytics.remove();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { kubeconfig: { type: "string" }, keys: { type: "string", default: "10" }, runs: { type: "string", default: "1" }, "idle-ms": { type: "string", default: "3000" } } });
  if (!values.kubeconfig) throw new Error("--kubeconfig is required (keys seeded by bench/startup.ts)");
  const dir = mkdtempSync(join(tmpdir(), "keyward-startup-memory-"));
  try {
    const app = imageApp(join(dir, "app"));
    for (let i = 0; i < Number(values.runs); i++) {
      process.stdout.write(JSON.stringify(await memoryOnce(values.kubeconfig, Number(values.keys), app.main, app.dir, Number(values["idle-ms"]))) + "\n");
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
