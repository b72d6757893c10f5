// A stand-in for the writer thread that opens nothing, keeps the calls it is given, and answers
// a retention call with them: what the writer thread asks of the thread it runs on.
import { serveCalls } from "./thread-calls.ts";
import type { WriterCall } from "./thread-wire.ts";

await serveCalls<WriterCall & { id: number }, WriterCall[]>(
  () => Promise.resolve([]),
  (calls, { id: _id, ...call }) => {
    if (call.op === "retention") return Promise.resolve(calls);
    calls.push(call);
    return Promise.resolve(undefined);
  },
  "close",
);
