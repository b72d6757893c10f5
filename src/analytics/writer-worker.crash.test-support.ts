// The writer thread, except that it dies (exit code 3) when a batch's first row has the request
// id "crash": what a thread that fails outright looks like to the check thread.
import { parentPort } from "node:worker_threads";

parentPort?.on("message", (c: { op: string; rows?: { requestId?: string }[] }) => {
  if (c.op === "rows" && c.rows?.[0]?.requestId === "crash") process.exit(3);
});
await import("./writer-worker.ts");
