// A writer for the tests of the ingest side: it keeps what the analytics store would have been given.
// And a check's event, as the rows of checks are made from.
import type { CheckEvent } from "../check/event.ts";
import type { AnalyticsWriter, KeyRecord, RequestRow } from "./row.ts";

export const CHECK_KEY = { namespace: "shop", name: "acme", uid: "uid-1", keyId: "kw_AbCdEfGh", owner: "acme-team" };

/** An allowed check of CHECK_KEY with every field a check can give, `more` in place of any. */
export const checkEvent = (more: Partial<CheckEvent> = {}): CheckEvent => ({
  at: 1_800_000_000_000,
  key: CHECK_KEY,
  outcome: "allowed",
  reason: "ok",
  status: 200,
  front: "grpc",
  policy: "shop/api",
  rule: "read",
  route: "GET /v1/orders/*",
  method: "GET",
  host: "api.example.com",
  path: "/v1/orders/7",
  source: "81.2.69.160",
  latencySeconds: 0.000123,
  requestId: "83c9600e-9cc8-48e9-b543-dd59374de47f",
  ...more,
});

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
