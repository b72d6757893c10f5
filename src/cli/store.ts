// The analytics store the reporting commands read: the one the same
// --analytics-* settings name for `keyward run` / `keyward authz`. Retention
// does not run from here, and a SQLite file that does not exist is an error
// (opening it would create an empty store and answer "no requests").
import { existsSync } from "node:fs";
import { analyticsStoreOptions, openAnalyticsStore, type AnalyticsStore } from "../analytics/store.ts";
import type { Config } from "../config/config.ts";
import { KeywardError } from "../errors.ts";
import type { Logger } from "../log.ts";

export async function openReportStore(command: string, config: Config, log: Logger, now?: () => number): Promise<AnalyticsStore> {
  const options = analyticsStoreOptions(config);
  if (!options) throw new KeywardError("ConfigInvalid", `keyward ${command} reads the analytics store: --analytics-store is off; name the store with --analytics-store=sqlite --analytics-sqlite-path=FILE or --analytics-store=postgres --analytics-postgres-url=URL`);
  if (options.store === "sqlite" && options.sqlitePath !== ":memory:" && !existsSync(options.sqlitePath)) {
    throw new KeywardError("AnalyticsStoreFailed", `analytics store ${options.sqlitePath}: no such file; give the --analytics-sqlite-path keyward writes to`);
  }
  return openAnalyticsStore({ ...options, retentionIntervalMs: 0, ...(now ? { now } : {}) }, log);
}
