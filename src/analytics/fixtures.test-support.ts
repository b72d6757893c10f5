// A writer for the tests of the ingest side: it keeps what the analytics store would have been given.
import type { AnalyticsWriter, KeyRecord, RequestRow } from "./row.ts";

export class RecordingWriter implements AnalyticsWriter {
  readonly rows: RequestRow[] = [];
  readonly keys: KeyRecord[] = [];

  writeRequests(rows: readonly RequestRow[]): Promise<void> {
    this.rows.push(...rows);
    return Promise.resolve();
  }

  upsertKeys(keys: readonly KeyRecord[]): Promise<void> {
    this.keys.push(...keys);
    return Promise.resolve();
  }
}
