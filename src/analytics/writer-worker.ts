// The analytics writer thread's own code (started by writer-thread.ts): it
// opens the store on its own connection (its SQLite handle, or its own
// PostgreSQL pool) and the country database, keeps the day partitions ahead
// and runs retention on its timer, and writes each batch it is given, after
// placing its rows' countries, one call at a time, answering each call once. SQLite runs statements to their end on the thread that calls it:
// here that thread answers no checks.
import { parentPort, workerData } from "node:worker_threads";
import type { Level } from "../log.ts";
import { openCountryDatabase, type CountryLookup } from "./geo.ts";
import { placeCountries } from "./rows.ts";
import { openAnalyticsStore, type AnalyticsStore, type AnalyticsStoreOptions } from "./store.ts";
import { forwardingLogger, toWire, type WriterCall, type WriterReply } from "./thread-wire.ts";

export interface WriterWorkerData {
  options: Omit<AnalyticsStoreOptions, "now" | "writerThread">;
  /** The log levels keyward's log writes: lines below them are not even posted. */
  levels: Level[];
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error("writer-worker.ts runs as a worker thread");
  const data = workerData as WriterWorkerData;
  const post = (r: WriterReply): void => { port.postMessage(r); };
  const levels = new Set(data.levels);
  const log = forwardingLogger(post, (l) => levels.has(l));
  let store: AnalyticsStore;
  let geo: CountryLookup;
  try {
    geo = await openCountryDatabase(data.options.countryDatabase || undefined);
    store = await openAnalyticsStore({ ...data.options, writerThread: false }, log);
  } catch (err) {
    post({ op: "failed", error: toWire(err) });
    port.close();
    return;
  }
  // One call at a time, in the order sent: the queue sends one write at a time anyway, and
  // retention or close must not interleave inside a batch's transaction.
  let chain: Promise<void> = Promise.resolve();
  port.on("message", (call: WriterCall) => {
    chain = chain.then(async () => {
      try {
        switch (call.op) {
          case "rows":
            // The rows are this thread's copies: their countries are placed here, off the check thread.
            placeCountries(call.rows, geo);
            await store.writeRequests(call.rows);
            post({ op: "done", id: call.id });
            break;
          case "keys":
            await store.upsertKeys(call.keys);
            post({ op: "done", id: call.id });
            break;
          case "retention":
            post({ op: "done", id: call.id, retention: await store.runRetention() });
            break;
          case "close":
            await store.close();
            post({ op: "done", id: call.id });
            port.close();
            break;
        }
      } catch (err) {
        post({ op: "error", id: call.id, error: toWire(err) });
      }
    });
  });
  post({ op: "ready" });
}

await main();
