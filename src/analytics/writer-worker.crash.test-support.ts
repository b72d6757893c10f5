// The writer thread, except that it dies (exit code 3) when a batch's raw strings (its rows'
// paths, sources and request ids) hold "crash", and (exit code 4) at a retention call: what a
// thread that fails outright looks like to the check thread, during a write or between two.
import { parentPort } from "node:worker_threads";
import type { RowBatch } from "./row-batch.ts";
import { rawText } from "./row-columns.ts";

parentPort?.on("message", (c: { op: string; batch?: RowBatch }) => {
  if (c.op === "rows" && c.batch && rawText(c.batch.raw).includes("crash")) process.exit(3);
  if (c.op === "retention") process.exit(4);
});
await import("./writer-worker.ts");
