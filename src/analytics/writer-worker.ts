// The analytics writer thread's own code (started by writer-thread.ts): it
// opens the store on its own connection (its SQLite handle, or its own
// PostgreSQL pool), migrating it, and checks the country database (read whole
// at the first public address, ADR 61), keeps the day partitions ahead
// and runs retention on its timer, and writes each batch it is given (decoded
// from its columns, row-batch.ts), after placing its rows' networks and
// countries, one call at a time, answering each call once.
// SQLite runs statements to their end on the thread that calls it: here that
// thread answers no checks.
import { checkCountryDatabase, CountriesOnDemand, defaultCountryDatabase, openCountryDatabase } from "./geo.ts";
import { RowBatchDecoder } from "./row-batch.ts";
import { placeGeography } from "./rows.ts";
import type { AnalyticsStoreOptions } from "./store.ts";
import { openWriterThreadStore, type WriteStore } from "./write-store.ts";
import { serveCalls } from "./thread-calls.ts";
import type { WriterCall } from "./thread-wire.ts";
import { compactHeap } from "../util/heap.ts";

export type WriterWorkerData = Omit<AnalyticsStoreOptions, "now" | "writerThread" | "readerClock" | "writerClock" | "writerIdleMs" | "threadNice">;

interface Writer {
  store: WriteStore;
  geo: CountriesOnDemand;
  /** The string table the batches are encoded against; empty in a thread started anew. */
  batches: RowBatchDecoder;
}

await serveCalls<WriterCall & { id: number }, Writer>(
  async (data, log) => {
    const options = data as WriterWorkerData;
    // Checked now (a bad file fails start-up), read whole at the first public address (ADR 61).
    const file = options.countryDatabase || defaultCountryDatabase();
    checkCountryDatabase(file);
    const geo = new CountriesOnDemand(
      () => openCountryDatabase(file),
      (err) => {
        log.error("the country database could not be read; rows go without a country", { err });
      },
    );
    const store = await openWriterThreadStore(options, log);
    // What loading the store's modules (Kysely's some 250 among them) and opening it left behind
    // is collected and compacted now, before the first call: V8 would not do it while the thread
    // idles (its memory reducer waits for a low allocation rate it measures only at collections),
    // and the pause falls on this thread alone (ADR 0069).
    await compactHeap();
    return { geo, store, batches: new RowBatchDecoder() };
  },
  async ({ store, geo, batches }, call) => {
    switch (call.op) {
      case "rows": {
        // The batch's strings join the table before the store is tried: a refused write leaves them here.
        const rows = batches.decode(call.batch);
        // Their networks and countries are placed here, off the check thread.
        placeGeography(rows, await geo.lookupFor(rows));
        return store.writeRequests(rows);
      }
      case "keys":
        return store.upsertKeys(call.keys);
      case "retention":
        return store.runRetention();
      case "pageCache":
        return store.pageCache(call.kib);
      case "close":
        return store.close();
    }
  },
  "close",
);
