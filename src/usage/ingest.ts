// Rows for the analytics store (ADR 37): each answered check and each Envoy
// access log entry becomes at most one row (src/analytics/rows.ts decides which
// half makes it), with the source's network and country; ApiKey changes become
// key records. Both wait in the one bounded queue of this process
// (src/analytics/queue.ts). With worker processes this is the primary: workers
// send it their checks (ADR 22), so one queue per pod writes to the store.
import type { Registry } from "prom-client";
import type { HttpLogEntry } from "../accesslog/proto.ts";
import type { CountryLookup } from "../analytics/geo.ts";
import { createAnalyticsMetrics } from "../analytics/metrics.ts";
import { AnalyticsQueue } from "../analytics/queue.ts";
import type { AnalyticsWriter, KeyRecord } from "../analytics/row.ts";
import { keyRecordOf, leftToAccessLog, rowFromCheck } from "../analytics/rows.ts";
import type { ApiKey } from "../api/types.ts";
import type { CheckEvent } from "../check/event.ts";
import type { Config } from "../config/config.ts";
import type { Clock } from "../k8s/clock.ts";
import type { ChangeType } from "../k8s/informer.ts";
import type { Logger } from "../log.ts";
import { anyPressure, type CpuPressure } from "../util/cpu-pressure.ts";
import { ownCpuThrottle, readText } from "../util/cpu-throttle.ts";
import { runDelay, runDelayNanos, SCHEDSTAT } from "../util/run-delay.ts";
import { rowFromAccessLog } from "./access-rows.ts";

export interface IngestDeps {
  writer: AnalyticsWriter;
  config: Pick<Config, "accessLogAddress" | "analyticsQueueSize" | "analyticsBatchSize" | "analyticsFlushInterval" | "analyticsCountryDatabase" | "analyticsShedWhenThrottled" | "analyticsShedRunDelay">;
  clock: Clock;
  log: Logger;
  registry: Registry;
  /** The uid of an ApiKey, for access log entries whose metadata has none. */
  uidOf: (namespace: string, name: string) => string | undefined;
  /** Opens the country database; default src/analytics/geo.ts. */
  openGeo?: (file: string | undefined) => Promise<CountryLookup>;
  /** Runs `fn` after the current event-loop turn; default setImmediate. */
  defer?: (fn: () => void) => void;
  /** The process's CPU throttling (ADR 75), with analyticsShedWhenThrottled; default its own cgroup's (src/util/cpu-throttle.ts). */
  cpu?: CpuPressure;
  /** The thread's run queue wait over a threshold (ADR 76), with analyticsShedRunDelay above 0; default this thread's schedstat (src/util/run-delay.ts). */
  runQueue?: (threshold: number) => CpuPressure;
}

export interface Ingest {
  check(e: CheckEvent): void;
  accessLogEntry(entry: HttpLogEntry): void;
  /** An ApiKey the usage watch saw change; `old`, what it was before an update. */
  keyChange(type: ChangeType, ak: ApiKey, old?: ApiKey): void;
  /**
   * The record of every ApiKey listed (`keys`, each made as the key is now by `record`, undefined
   * for one gone or without a uid), made and written `KEY_RECORD_CHUNK` at a time, each chunk
   * written (or refused) before the next is made; resolves when all are, or at stop.
   */
  recordKeys<K>(keys: readonly K[], record: (k: K) => KeyRecord | undefined): Promise<void>;
  /** Writes what waits now (tests). */
  flush(): Promise<void>;
  /** Writes what waits; what the store will not take is counted as dropped. */
  stop(): Promise<void>;
}

/** Key records made and handed to the store at a time after the list (recordKeys). */
export const KEY_RECORD_CHUNK = 1000;

/** Whether two records of a key hold the same (labels and scopes in the ApiKey's own order). */
function sameRecord(a: KeyRecord, b: KeyRecord): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Opens the country database and starts the queue. */
export async function startIngest(d: IngestDeps): Promise<Ingest> {
  const { config, clock } = d;
  // maxmind loads only where the database is opened: with a writer thread placing rows, not here.
  const open = d.openGeo ?? (async (file) => (await import("../analytics/geo.ts")).openCountryDatabase(file));
  // A writer that places networks and countries opened the database on its own thread; rows go without them.
  const placed = d.writer.placesGeography === true;
  const geo = placed ? undefined : await open(config.analyticsCountryDatabase || undefined);
  const metrics = createAnalyticsMetrics(d.registry, () => q.queued);
  // Rows are shed while the process is short of CPU, by either signal the settings turn on.
  if (config.analyticsShedRunDelay > 0 && !d.runQueue && runDelayNanos(readText(SCHEDSTAT)) === undefined) {
    d.log.info("analytics rows are not shed while keyward waits for a CPU: this system gives no run queue wait", { file: SCHEDSTAT });
  }
  const cpu = anyPressure([
    ...(config.analyticsShedWhenThrottled ? [d.cpu ?? ownCpuThrottle()] : []),
    ...(config.analyticsShedRunDelay > 0 ? [(d.runQueue ?? runDelay)(config.analyticsShedRunDelay)] : []),
  ]);
  const q: AnalyticsQueue = new AnalyticsQueue({
    writer: d.writer,
    clock,
    capacity: config.analyticsQueueSize,
    batchSize: Math.min(config.analyticsBatchSize, config.analyticsQueueSize),
    flushIntervalMs: config.analyticsFlushInterval,
    log: d.log.child({ component: "analytics" }),
    counters: metrics.counters,
    ...(cpu ? { cpu } : {}),
  });
  const accessLogOn = config.accessLogAddress !== "";
  let stopped = false;
  // A check only leaves its event; rows (with their country lookups) are made after the turn
  // that answered it, so the check path does no more than before.
  const defer = d.defer ?? ((fn: () => void) => { setImmediate(fn); });
  let checks: CheckEvent[] = [];
  const drain = (): void => {
    const batch = checks;
    checks = [];
    // While the CPU is short, the turn's rows are counted as made and dropped, and not made (ADR 75, 76).
    if (q.shedding()) {
      q.shed(batch.length);
      metrics.row("check", batch.length);
      return;
    }
    let made = 0;
    for (const e of batch) {
      // With the writer placing networks and countries, the row goes into the queue's columns
      // straight from the event (no row object); else it is made here, with them.
      if (placed) {
        if (q.pushCheck(e)) made++;
        continue;
      }
      const row = rowFromCheck(e, geo);
      if (!row) continue;
      made++;
      q.push(row);
    }
    // Counted once per turn, not once per row: the same total, one labelled counter update.
    if (made > 0) metrics.row("check", made);
  };
  return {
    check(e) {
      if (!e.key || leftToAccessLog(e, accessLogOn)) return;
      if (checks.push(e) === 1) defer(drain);
    },
    accessLogEntry(entry) {
      const row = rowFromAccessLog(entry, { geo, uidOf: d.uidOf, now: () => clock.now() });
      if (!row) return;
      metrics.row("access_log");
      // While the CPU is short, the row is counted as dropped rather than queued (ADR 75, 76);
      // an entry that makes no row is not counted.
      if (q.shedding()) q.shed(1);
      else q.push(row);
    },
    keyChange(type, ak, old) {
      const k = keyRecordOf(ak, type === "delete" ? clock.now() : undefined);
      if (!k) return;
      // A status write (every usage flush) changes nothing the store keeps: compared with what the
      // key was, so no state is kept per key.
      const was = type === "update" && old ? keyRecordOf(old) : undefined;
      if (was && sameRecord(was, k)) return;
      q.upsertKey(k);
    },
    async recordKeys(keys, record) {
      // Many records are written with less memory, and what they grew shed after (ADR 63).
      await d.writer.beforeKeyRecords?.(keys.length).catch((err: unknown) => {
        d.log.warn("analytics writer not prepared for the key records", { err });
      });
      for (let i = 0; i < keys.length && !stopped; i += KEY_RECORD_CHUNK) {
        const refs = keys.slice(i, i + KEY_RECORD_CHUNK);
        // Each chunk's records are made as its write starts and held by nothing while the store
        // writes them, so that they die young rather than fill the old generation (ADR 70).
        const made = (): KeyRecord[] => {
          const out: KeyRecord[] = [];
          for (const ref of refs) {
            const k = record(ref);
            if (k) out.push(k);
          }
          return out;
        };
        // Refused, they wait in the queue as any key record does, and are tried again with it.
        if (!(await q.writeKeysNow(made))) for (const k of made()) q.upsertKey(k);
      }
      if (!stopped) {
        await d.writer.afterKeyRecords?.(keys.length).catch((err: unknown) => {
          d.log.warn("analytics writer thread not renewed after the key records", { err });
        });
      }
    },
    flush: () => {
      drain();
      return q.flush();
    },
    stop: () => {
      stopped = true;
      drain();
      return q.stop();
    },
  };
}
