// What the alert evaluator (src/alerts, ADR 45) asks of the store, written once
// for every backend: per-key counts over a window, the networks and countries a
// key has just been seen from against its own history, keys gone quiet or
// unused, keys expiring, quota used in a period, and the alert state table that
// holds each alert's firing flag and cooldown for every replica.
import { sql, type Kysely } from "kysely";
import { num, segmentsMeeting } from "./queries.ts";
import { alertKey, type AlertKey } from "./alert-key.ts";
import { DAY_MS, type AlertStateTable, type AnalyticsDB } from "./schema.ts";

export { alertKey, type AlertKey };

export interface KeyWindow extends AlertKey {
  requests: number;
  /** keyward answered 429 (rate limit or quota). */
  limited: number;
  /** keyward answered 403. */
  forbidden: number;
  /** Requests the upstream answered, and of those with a 5xx. */
  upstream: number;
  upstream5xx: number;
  /** The newest request in the window (ms). */
  lastAt: number;
}

export interface NewValue extends AlertKey {
  /** The network or country first seen. */
  value: string;
  firstAt: number;
}

export interface DormantKey extends AlertKey {
  /** The last UTC day with a request (ms), when there was one. */
  lastUsedAt?: number;
}

export interface ExpiringKey extends AlertKey {
  expiresAt: number;
}

export type AlertState = AlertStateTable;

const KEY_COLUMNS = ["k.uid", "k.namespace", "k.name", "k.owner"] as const;

export class AlertQueries {
  readonly #db: Kysely<AnalyticsDB>;

  constructor(db: Kysely<AnalyticsDB>) {
    this.#db = db;
  }

  /** Per live key with requests in [since, until): the counts the ratio, spike and silence alerts read. */
  async windowCounts(since: number, until: number): Promise<KeyWindow[]> {
    const rows = await this.#db
      .selectFrom("requests as t")
      .innerJoin("keys as k", "k.uid", "t.uid")
      .where("k.deleted_at", "is", null)
      .where(sql<boolean>`t.at >= ${since} and t.at < ${until}`)
      .select(KEY_COLUMNS)
      .select((eb) => [
        eb.fn.countAll<number>().as("requests"),
        eb.fn.sum<number>(sql`case when t.status = 429 then 1 else 0 end`).as("limited"),
        eb.fn.sum<number>(sql`case when t.status = 403 then 1 else 0 end`).as("forbidden"),
        eb.fn.sum<number>(sql`case when t.upstream_status is null then 0 else 1 end`).as("upstream"),
        eb.fn.sum<number>(sql`case when t.upstream_status >= 500 then 1 else 0 end`).as("upstream5xx"),
        eb.fn.max<number>(sql`t.at`).as("last_at"),
      ])
      .groupBy(KEY_COLUMNS)
      .execute();
    return rows.map((r) => ({
      ...alertKey(r),
      requests: num(r.requests),
      limited: num(r.limited),
      forbidden: num(r.forbidden),
      upstream: num(r.upstream),
      upstream5xx: num(r.upstream5xx),
      lastAt: num(r.last_at),
    }));
  }

  /**
   * Networks (or countries) of live keys first seen at or after `since`, among requests since
   * `historyFrom`, for keys that have requests in [historyFrom, since): a key with no history
   * has nothing to compare with. Country `private` and unknown countries are left out.
   */
  async newValues(column: "network" | "country", since: number, historyFrom: number): Promise<NewValue[]> {
    const col = sql.ref(`t.${column}`);
    const rows = await this.#db
      .selectFrom("requests as t")
      .innerJoin("keys as k", "k.uid", "t.uid")
      .where("k.deleted_at", "is", null)
      .where(sql<boolean>`t.at >= ${historyFrom} and ${col} is not null and ${col} <> '' and ${col} <> 'private'`)
      .where((eb) => {
        const history = eb.selectFrom("requests as h").select(sql`1`.as("one")).whereRef("h.uid", "=", "t.uid").where(sql<boolean>`h.at >= ${historyFrom} and h.at < ${since}`);
        const segments = segmentsMeeting(this.#db, "h", historyFrom, since);
        return eb.exists(segments ? history.where(segments) : history);
      })
      .select(KEY_COLUMNS)
      .select(sql<string>`${col}`.as("value"))
      .select((eb) => eb.fn.min<number>(sql`t.at`).as("first_at"))
      .groupBy([...KEY_COLUMNS, col])
      .having(sql<boolean>`min(t.at) >= ${since}`)
      .execute();
    return rows.map((r) => ({ ...alertKey(r), value: r.value, firstAt: num(r.first_at) }));
  }

  /** Live keys created before `usedBefore` with no request on or after its UTC day (daily rollups: kept for good). */
  async dormant(usedBefore: number): Promise<DormantKey[]> {
    const fromDay = Math.floor(usedBefore / DAY_MS);
    const rows = await this.#db
      .selectFrom("keys as k")
      .where("k.deleted_at", "is", null)
      .where("k.created_at", "<", usedBefore)
      .where((eb) => eb.not(eb.exists(eb.selectFrom("rollups as r").select(sql`1`.as("one")).whereRef("r.uid", "=", "k.uid").where("r.day", ">=", fromDay))))
      .select(KEY_COLUMNS)
      .select((eb) => eb.selectFrom("rollups as r").whereRef("r.uid", "=", "k.uid").select(sql<number>`max(r.day)`.as("d")).as("last_day"))
      .execute();
    return rows.map((r) => ({ ...alertKey(r), ...(r.last_day !== null ? { lastUsedAt: num(r.last_day) * DAY_MS } : {}) }));
  }

  /** Live keys whose expiry falls in (now, until]. */
  async expiring(now: number, until: number): Promise<ExpiringKey[]> {
    const rows = await this.#db
      .selectFrom("keys as k")
      .where("k.deleted_at", "is", null)
      .where(sql<boolean>`k.expires_at > ${now} and k.expires_at <= ${until}`)
      .select([...KEY_COLUMNS, "k.expires_at"])
      .execute();
    return rows.map((r) => ({ ...alertKey(r), expiresAt: num(r.expires_at) }));
  }

  /** Allowed requests per key from `fromDay` (UTC days since the epoch) on, from the daily rollups, for these uids. */
  async allowedSince(uids: readonly string[], fromDay: number): Promise<Map<string, number>> {
    if (uids.length === 0) return new Map();
    const rows = await this.#db
      .selectFrom("rollups as r")
      .where("r.uid", "in", [...uids])
      .where("r.day", ">=", fromDay)
      .where("r.outcome", "=", "allowed")
      .select(["r.uid", (eb) => eb.fn.sum<number>("r.n").as("n")])
      .groupBy("r.uid")
      .execute();
    return new Map(rows.map((r) => [r.uid, num(r.n)]));
  }

  /** Every alert the evaluator has fired, firing or not. */
  async states(): Promise<AlertState[]> {
    const rows = await this.#db.selectFrom("alert_state").selectAll().execute();
    return rows.map((r) => ({ ...r, firing: num(r.firing), fired_at: num(r.fired_at), resolved_at: r.resolved_at === null ? null : num(r.resolved_at) }));
  }

  /**
   * Marks the alert firing from `now`, unless it fires already or last started within the
   * cooldown. One conditional write: of two evaluators racing, one wins. True when it fired.
   */
  async fire(a: Omit<AlertState, "firing" | "fired_at" | "resolved_at">, now: number, cooldownMs: number): Promise<boolean> {
    const row: AlertState = { ...a, firing: 1, fired_at: now, resolved_at: null };
    const ins = await this.#db
      .insertInto("alert_state")
      .values(row)
      .onConflict((oc) => oc.columns(["uid", "alert"]).doNothing())
      .executeTakeFirst();
    if (Number(ins.numInsertedOrUpdatedRows ?? 0n) === 1) return true;
    const upd = await this.#db
      .updateTable("alert_state")
      .set({ firing: 1, fired_at: now, resolved_at: null, namespace: a.namespace, name: a.name, owner: a.owner, message: a.message })
      .where("uid", "=", a.uid)
      .where("alert", "=", a.alert)
      .where("firing", "=", 0)
      .where("fired_at", "<=", now - cooldownMs)
      .executeTakeFirst();
    return Number(upd.numUpdatedRows) === 1;
  }

  /** Marks a firing alert resolved at `now`; true when it was firing. */
  async resolve(uid: string, alert: string, now: number): Promise<boolean> {
    const upd = await this.#db.updateTable("alert_state").set({ firing: 0, resolved_at: now }).where("uid", "=", uid).where("alert", "=", alert).where("firing", "=", 1).executeTakeFirst();
    return Number(upd.numUpdatedRows) === 1;
  }

  /** Updates a firing alert's message (the numbers change while it fires). */
  async touch(uid: string, alert: string, message: string): Promise<void> {
    await this.#db.updateTable("alert_state").set({ message }).where("uid", "=", uid).where("alert", "=", alert).where("firing", "=", 1).execute();
  }
}
