// The analytics writer thread's own code (started by writer-thread.ts): it
// opens the store on its own connection (its SQLite handle, or its own
// PostgreSQL pool) and the country database, keeps the day partitions ahead
// and runs retention on its timer, and writes each batch it is given, after
// placing its rows' countries, one call at a time, answering each call once.
// SQLite runs statements to their end on the thread that calls it: here that
// thread answers no checks.
import { openCountryDatabase, type CountryLookup } from "./geo.ts";
import { placeCountries } from "./rows.ts";
import { openAnalyticsStore, type AnalyticsStore, type AnalyticsStoreOptions } from "./store.ts";
import { serveCalls } from "./thread-calls.ts";
import type { WriterCall } from "./thread-wire.ts";

export type WriterWorkerData = Omit<AnalyticsStoreOptions, "now" | "writerThread">;

interface Writer {
  store: AnalyticsStore;
  geo: CountryLookup;
}

await serveCalls<WriterCall & { id: number }, Writer>(
  async (data, log) => {
    const options = data as WriterWorkerData;
    const geo = await openCountryDatabase(options.countryDatabase || undefined);
    return { geo, store: await openAnalyticsStore({ ...options, writerThread: false }, log) };
  },
  async ({ store, geo }, call) => {
    switch (call.op) {
      case "rows":
        // The rows are this thread's copies: their countries are placed here, off the check thread.
        placeCountries(call.rows, geo);
        return store.writeRequests(call.rows);
      case "keys":
        return store.upsertKeys(call.keys);
      case "retention":
        return store.runRetention();
      case "close":
        return store.close();
    }
  },
  "close",
);
