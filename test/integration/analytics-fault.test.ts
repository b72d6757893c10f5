// The analytics write path when its PostgreSQL dies, end to end: a real
// `keyward authz` process writing to a real PostgreSQL 15, real gRPC checks
// through its ext_authz port the whole time. PostgreSQL is killed mid-load
// (pg_ctl stop -m immediate, as a crash) and restarted. Proven:
//   - every check is answered, correctly, and the checks during the outage are
//     no slower than before it beyond a small bound;
//   - the queue drops rows once full and counts them exactly: rows made (one
//     per check: the access log is off) = rows in the database + rows dropped,
//     and the metrics say the same;
//   - the episode is logged once when it starts and once when it ends, with
//     the episode's exact count;
//   - ingestion resumes after the restart without a restart of keyward.
import type { KubeConfig } from "@kubernetes/client-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { authzClient, checkRequest, createKey, createPolicy, percentile, summarize, type TestKey } from "../conformance/harness.ts";
import { freePort } from "../controlplane/controlplane.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { dataPlaneArgs, dataPlaneKubeconfig, logRecords, metricValue, startKeyward, type DataPlaneKubeconfig, type KeywardProcess } from "../support/keyward.ts";
import { havePostgres, KEYWARD_PASSWORD, startPostgres, type PostgresCluster } from "../support/postgres.ts";

const HOST = "fault.example.com";
/** Small, so that a short outage fills the queue. */
const QUEUE = 300;
const BATCH = 50;
/** The checks during the outage may be this much slower at the 99th percentile than before it (a shared, busy machine). */
const P99_BOUND_MS = 50;

type Phase = "before" | "outage" | "after";

interface Answer {
  phase: Phase;
  ms: number;
  want: number;
  got: number;
  id: string;
}

describe.skipIf(!havePostgres())("keyward authz --analytics-store=postgres: PostgreSQL killed mid-load and restarted", () => {
  let adminKc: KubeConfig;
  let admin: KubeRest;
  let ns: string;
  let dp: DataPlaneKubeconfig;
  let pgc: PostgresCluster;
  let kw: KeywardProcess;
  let grpcPort: number;
  let metricsPort: number;
  let reader: TestKey;
  let noScope: TestKey;

  /** A query on keyward's database, as keyward's role. */
  const sql = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> => {
    const cl = new pg.Client({ connectionString: pgc.url() });
    await cl.connect();
    try {
      return (await cl.query<R>(text, values)).rows;
    } finally {
      await cl.end();
    }
  };

  beforeAll(async () => {
    adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    dp = await dataPlaneKubeconfig(adminKc, admin, "analytics-fault");
    ns = await createTestNamespace(adminKc, "afault");
    await createPolicy(admin, ns, "api", { hosts: [HOST], rules: [{ name: "read", paths: ["/items/*"], methods: ["GET"], scopes: ["items:read"] }] });
    reader = await createKey(admin, ns, "reader", { owner: "acme", scopes: ["items:read"] });
    noScope = await createKey(admin, ns, "no-scope", { owner: "initech", scopes: [] });
    pgc = await startPostgres();
    [grpcPort, metricsPort] = [await freePort(), await freePort()];
    kw = startKeyward([
      ...dataPlaneArgs({ kubeconfig: dp.kubeconfig, namespace: ns, grpcPort, metricsPort }),
      "--analytics-store=postgres",
      `--analytics-postgres-url=${pgc.url()}`,
      "--analytics-connect-timeout=1s",
      `--analytics-queue-size=${QUEUE}`,
      `--analytics-batch-size=${BATCH}`,
      "--analytics-flush-interval=100ms",
    ]);
    await kw.ready(metricsPort);
  }, 180_000);

  afterAll(async () => {
    await kw.kill();
    await pgc.remove();
    await deleteNamespace(adminKc, ns);
    admin.close();
    dp.remove();
    expect(kw.output()).not.toContain(reader.key);
    expect(kw.output()).not.toContain(noScope.key);
    expect(kw.output()).not.toContain(KEYWARD_PASSWORD);
  });

  it("checks stay answered and fast, drops are counted exactly and logged once, and ingestion resumes", async () => {
    const metric = (series: string): Promise<number> => metricValue(metricsPort, series);
    const answers: Answer[] = [];
    let phase: Phase = "before";
    const state = { stop: false };
    const c = authzClient(grpcPort);
    // Two checks in flight at a time, each with its own request id: 4 of 5 allowed, 1 of 5 refused (no scope).
    let n = 0;
    const worker = async (): Promise<void> => {
      while (!state.stop) {
        const i = n++;
        const ok = i % 5 !== 4;
        const id = `fault-${i}`;
        const p = phase;
        const t = performance.now();
        const res = await c.check(checkRequest({ host: HOST, path: `/items/${i}`, headers: { "x-api-key": ok ? reader.key : noScope.key, "x-request-id": id } }));
        answers.push({ phase: p, ms: performance.now() - t, want: ok ? 200 : 403, got: summarize(res).httpStatus, id });
      }
    };
    const load = Promise.all([worker(), worker()]);
    try {
      await eventually(async () => ((await metric("keyward_analytics_rows_written_total")) >= 500 ? true : undefined), 30_000, "rows written before the kill");
      await pgc.kill();
      phase = "outage";
      const outageFrom = answers.length;
      // Down long enough for the queue to fill and overflow, under load: rows made beyond what
      // the queue and a batch in flight hold are dropped, whatever the dropped counter says.
      const unwritten = async (): Promise<number> => (await metric('keyward_analytics_rows_total{from="check"}')) - (await metric("keyward_analytics_rows_written_total"));
      await eventually(async () => ((await unwritten()) >= 3 * QUEUE + BATCH && answers.length - outageFrom >= 1000 ? true : undefined), 60_000, "rows made during the outage");
      await pgc.start();
      phase = "after";
      const writtenAtRestart = await metric("keyward_analytics_rows_written_total");
      await eventually(async () => ((await metric("keyward_analytics_rows_written_total")) >= writtenAtRestart + 500 ? true : undefined), 60_000, "rows written after the restart");
    } finally {
      state.stop = true;
      await load;
      c.close();
    }

    // Every check was answered as the policy says, whatever the store did.
    expect(answers.filter((a) => a.got !== a.want)).toEqual([]);
    const sortedMs = (p: Phase): number[] => answers.filter((a) => a.phase === p).map((a) => a.ms).sort((a, b) => a - b);
    const before = sortedMs("before");
    const outage = sortedMs("outage");
    expect(outage.length).toBeGreaterThanOrEqual(1000);
    expect(percentile(outage, 99)).toBeLessThan(percentile(before, 99) + P99_BOUND_MS);

    // Everything made is written or dropped, and the numbers agree with the database.
    const made = await metric('keyward_analytics_rows_total{from="check"}');
    expect(made).toBe(answers.length);
    // The last batch may still be in flight (the queued gauge does not count it): wait for its write.
    const [written, dropped] = await eventually(
      async () => {
        const w = await metric("keyward_analytics_rows_written_total");
        const d = await metric("keyward_analytics_rows_dropped_total");
        return w + d === made && (await metric("keyward_analytics_rows_queued")) === 0 ? [w, d] : undefined;
      },
      30_000,
      "every row made written or dropped",
    );
    expect(dropped).toBeGreaterThanOrEqual(2 * QUEUE);
    expect(await metric("keyward_analytics_write_failures_total")).toBeGreaterThan(0);
    const counts = (await sql<{ rows: string; ids: string; rolled: string }>(
      "select (select count(*) from requests) as rows, (select count(distinct request_id) from requests) as ids, (select coalesce(sum(n), 0) from rollups) as rolled",
    ))[0]!;
    expect(Number(counts.rows)).toBe(written);
    expect(Number(counts.ids)).toBe(written);
    expect(Number(counts.rolled)).toBe(written);
    expect(Number(counts.rows)).toBe(answers.length - dropped);

    // Ingestion resumed: the newest requests are on record.
    const last = answers.slice(-20).map((a) => a.id);
    const got = (await sql<{ id: string }>("select request_id as id from requests where request_id = any($1)", [last])).map((r) => r.id);
    expect(got.sort()).toEqual([...last].sort());

    // One episode: one line when the drops began, one when they ended, with the exact count.
    const records = logRecords(kw.output());
    const began = records.filter((r) => r.msg === "analytics rows dropped: the store is behind; the oldest rows give way");
    const ended = records.filter((r) => r.msg === "analytics rows no longer dropped");
    expect(began).toHaveLength(1);
    expect(ended).toHaveLength(1);
    expect(ended[0]!.dropped).toBe(dropped);
  }, 240_000);
});
