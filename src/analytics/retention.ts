// Retention: per-request rows are kept for a window of whole UTC days, then
// removed by the backend's cheap path (a dropped partition, or bounded range
// deletes). Daily rollups are kept for good unless a rollup retention is set.
// ApiKey records are never removed: a deleted key's history stays readable.
import type { Backend } from "./backend.ts";
import { DAY_MS } from "./schema.ts";

export interface RetentionOptions {
  /** How long per-request rows are kept (ms). */
  requestsMs: number;
  /** How long daily rollups are kept (ms); 0 keeps them for good. */
  rollupsMs: number;
}

export interface RetentionResult {
  /** Per-request rows removed (SQLite) or whole day partitions dropped (PostgreSQL). */
  requests: number;
  /** Rollup rows removed. */
  rollups: number;
}

/** The first ms whose per-request rows are kept at `now`: the start of the UTC day `requestsMs` ago. */
export function requestsFrom(now: number, requestsMs: number): number {
  return Math.floor((now - requestsMs) / DAY_MS) * DAY_MS;
}

export async function applyRetention(backend: Backend, now: number, options: RetentionOptions): Promise<RetentionResult> {
  const requests = await backend.dropRequestsBefore(requestsFrom(now, options.requestsMs));
  let rollups = 0;
  if (options.rollupsMs > 0) {
    const firstDay = Math.floor((now - options.rollupsMs) / DAY_MS);
    const res = await backend.db.deleteFrom("rollups").where("day", "<", firstDay).executeTakeFirst();
    rollups = Number(res.numDeletedRows);
  }
  return { requests, rollups };
}
