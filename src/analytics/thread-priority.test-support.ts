// A thread served by serveCalls that answers each call with its own thread id and nice value.
// Started with data `{ before: N }`, it sets its own nice to N before serveCalls lowers it:
// a thread already below the asked priority.
import { getPriority, setPriority } from "node:os";
import { workerData } from "node:worker_threads";
import { serveCalls } from "./thread-calls.ts";
import { ownThreadId } from "./thread-priority.ts";

const before = (workerData as { data?: { before?: number } }).data?.before;
const tid = ownThreadId();
if (before !== undefined && tid !== undefined) setPriority(tid, before);

await serveCalls<{ op: "nice" | "close"; id: number }, null>(
  () => Promise.resolve(null),
  () => Promise.resolve({ tid, nice: tid === undefined ? undefined : getPriority(tid) }),
  "close",
);
