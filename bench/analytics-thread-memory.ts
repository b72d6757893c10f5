// What one analytics thread costs a process in memory, by what it loads: each variant runs in a
// process of its own started as the image starts keyward (its environment, the chart's
// NODE_OPTIONS, keyward built as the image runs it), which starts one thread, waits until it is
// open and then `--idle-ms`, and reports the RSS it added, by mapping kind (/proc/self/smaps:
// the node binary's pages, glibc's heaps, other anonymous memory), and the thread's V8 heap
// (process.report).
//
//   node bench/analytics-thread-memory.ts [--variants empty,sqlite,kysely,writer] [--runs 3]
//                                         [--young-mb N: the other variants' young generation]
//
// Variants: `empty` a thread that loads nothing; `sqlite` one that opens a SQLite file with
// node:sqlite; `kysely` one that loads Kysely (the store's query layer); `writer` keyward's
// analytics writer thread (startWriterThread) opened on a fresh SQLite file, with the young
// generation keyward gives it. Without --young-mb the other variants keep the process's (the
// chart's --max-semi-space-size). One JSON line per start on stdout, then the medians.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { chartNodeOptions } from "./check.ts";
import { imageApp, imageEnv } from "./lib/image-env.ts";
import { median } from "./lib/stats.ts";
import { smapsByKind } from "./startup.ts";
import type * as ThreadCallsModule from "../src/analytics/thread-calls.ts";
import type * as WriterThreadModule from "../src/analytics/writer-thread.ts";
import type * as LogModule from "../src/log.ts";

const VARIANTS = ["empty", "sqlite", "kysely", "writer"] as const;
type Variant = (typeof VARIANTS)[number];

interface ThreadCost {
  variant: Variant;
  /** MiB the process's RSS grew by with the thread open and idle. */
  rss: number;
  /** The same by mapping kind (MiB). */
  binary: number;
  malloc: number;
  otherAnon: number;
  /** The thread's V8 heap (MiB): committed, used, and its new space. */
  heapTotal: number;
  heapUsed: number;
  newSpace: number;
}

const mib = (kb: number): number => Math.round((kb / 1024) * 10) / 10;

/** The thread's side of the plain variants: loads what the variant loads, then answers `ready`. */
const threadSource = (variant: Exclude<Variant, "writer">, dir: string, app: string): string =>
  `import { parentPort } from "node:worker_threads";\n` +
  (variant === "sqlite" ? `const { DatabaseSync } = await import("node:sqlite"); globalThis.db = new DatabaseSync(${JSON.stringify(join(dir, "t.sqlite"))});\n` : "") +
  (variant === "kysely" ? `await import(${JSON.stringify(pathToFileURL(join(app, "node_modules/kysely/dist/index.js")).href)});\n` : "") +
  `parentPort.postMessage("ready"); parentPort.on("message", () => {});\n`;

/** In the child process: starts the variant's thread, and measures. */
async function child(variant: Variant, app: string, youngMb: number, idleMs: number): Promise<ThreadCost> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-thread-memory-"));
  const kinds = (): ReturnType<typeof smapsByKind> => smapsByKind(readFileSync("/proc/self/smaps", "utf8"), realpathSync(process.execPath));
  const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  try {
    await pause(idleMs);
    const before = kinds();
    let stop: () => Promise<unknown>;
    if (variant === "writer") {
      const { startWriterThread } = (await import(pathToFileURL(join(app, "dist/analytics/writer-thread.js")).href)) as typeof WriterThreadModule;
      const { silentLogger } = (await import(pathToFileURL(join(app, "dist/log.js")).href)) as typeof LogModule;
      const writer = startWriterThread({ store: "sqlite", sqlitePath: join(dir, "a.sqlite"), postgresUrl: "", retentionMs: 7 * 86_400_000, rollupRetentionMs: 0, retentionIntervalMs: 0, writerThread: true }, silentLogger);
      await writer.opened;
      stop = () => writer.close();
    } else {
      const limits = youngMb > 0 ? (await import(pathToFileURL(join(app, "dist/analytics/thread-calls.js")).href) as typeof ThreadCallsModule).threadYoungGeneration(youngMb) : undefined;
      const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(threadSource(variant, dir, app))}`), { ...(limits ? { resourceLimits: limits } : {}) });
      await new Promise<void>((resolve, reject) => {
        worker.once("message", () => {
          resolve();
        });
        worker.once("error", reject);
      });
      stop = () => worker.terminate();
    }
    await pause(idleMs);
    const after = kinds();
    const report = process.report.getReport() as unknown as { workers: { javascriptHeap: { totalMemory: number; usedMemory: number; heapSpaces: Record<string, { memorySize: number }> } }[] };
    const heap = report.workers[0]?.javascriptHeap;
    await stop();
    const grew = (k: keyof typeof before): number => mib(after[k] - before[k]);
    return {
      variant,
      rss: mib(Object.values(after).reduce((a, b) => a + b, 0) - Object.values(before).reduce((a, b) => a + b, 0)),
      binary: grew("binary"),
      malloc: mib(after.mallocHeap + after.mallocArenas - before.mallocHeap - before.mallocArenas),
      otherAnon: grew("otherAnon"),
      heapTotal: mib((heap?.totalMemory ?? 0) / 1024),
      heapUsed: mib((heap?.usedMemory ?? 0) / 1024),
      newSpace: mib((heap?.heapSpaces["new_space"]?.memorySize ?? 0) / 1024),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { variants: { type: "string", default: VARIANTS.join(",") }, runs: { type: "string", default: "3" }, "young-mb": { type: "string", default: "0" }, "idle-ms": { type: "string", default: "2000" }, child: { type: "string" }, app: { type: "string" } } });
  if (values.child) {
    process.stdout.write(JSON.stringify(await child(values.child as Variant, values.app!, Number(values["young-mb"]), Number(values["idle-ms"]))) + "\n");
  } else {
    const variants = values.variants.split(",") as Variant[];
    const dir = mkdtempSync(join(tmpdir(), "keyward-thread-memory-app-"));
    try {
      const app = imageApp(join(dir, "app"));
      const env = { ...process.env, ...imageEnv(), NODE_DISABLE_COMPILE_CACHE: "1", NODE_OPTIONS: chartNodeOptions().join(" ") };
      const runs = new Map<Variant, ThreadCost[]>(variants.map((v) => [v, []]));
      // The variants take turns, run after run.
      for (let i = 0; i < Number(values.runs); i++) {
        for (const v of variants) {
          const out = execFileSync(process.execPath, [import.meta.filename, "--child", v, "--app", app.dir, "--young-mb", values["young-mb"], "--idle-ms", values["idle-ms"]], { env, encoding: "utf8" });
          process.stdout.write(out);
          runs.get(v)!.push(JSON.parse(out) as ThreadCost);
        }
      }
      for (const [v, rs] of runs) {
        const m = (k: keyof Omit<ThreadCost, "variant">): number => median(rs.map((r) => r[k]));
        process.stdout.write(JSON.stringify({ variant: v, median: { rss: m("rss"), binary: m("binary"), malloc: m("malloc"), otherAnon: m("otherAnon"), heapTotal: m("heapTotal"), heapUsed: m("heapUsed"), newSpace: m("newSpace") } }) + "\n");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
