// A stand-in for the writer thread that opens nothing and answers a retention call with the
// options it was started with: what the writer hands each thread it starts.
import { serveCalls } from "./thread-calls.ts";

await serveCalls<{ op: string; id: number }, unknown>(
  (data) => Promise.resolve(data),
  (data, call) => Promise.resolve(call.op === "retention" ? data : undefined),
  "close",
);
