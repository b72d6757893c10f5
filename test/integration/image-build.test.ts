// keyward as its image runs it (ADR 58): built by scripts/build.ts into an application directory
// laid out as the image's, then `node dist/main.js authz` (the Dockerfile's ENTRYPOINT) with
// the image's environment, against the real apiserver. Node runs with
// --no-experimental-strip-types, so loading any .ts file fails, in the main thread and in every
// worker thread (which inherit the flag): a check answered, rows written by the analytics
// writer's thread and read back by the reader's, from the built modules alone, prove that none
// of them loads TypeScript support. With --authz-workers 2 the primary forks its worker
// processes from the same built entry point (node:cluster re-runs dist/main.js with the
// primary's flags), so both workers answering proves the same of them.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { pathToFileURL } from "node:url";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { imageApp, imageEnv, type ImageApp } from "../../bench/lib/image-env.ts";
import { threadsNamed } from "../../bench/lib/proc.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { authzClient, checkRequest, createKey, createPolicy, summarize, type TestKey } from "../conformance/harness.ts";
import { freePort } from "../controlplane/controlplane.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { dataPlaneArgs, dataPlaneKubeconfig, startKeyward, type DataPlaneKubeconfig, type KeywardProcess } from "../support/keyward.ts";

const HOST = "built.example.com";
const NO_TYPESCRIPT = "--no-experimental-strip-types";
const root = resolve(import.meta.dirname, "..", "..");

describe("keyward built as the image builds it, run without TypeScript support", () => {
  let adminKc: KubeConfig;
  let admin: KubeRest;
  let ns: string;
  let dp: DataPlaneKubeconfig;
  let dir: string;
  let app: ImageApp;
  let file: string;
  let kw: KeywardProcess;
  let grpcPort: number;
  let metricsPort: number;
  let reader: TestKey;
  const started = Date.now();

  beforeAll(async () => {
    adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    dp = await dataPlaneKubeconfig(adminKc, admin, "image-build");
    dir = dp.dir;
    app = imageApp(join(dir, "app"));
    const { kubeconfig } = dp;
    file = join(dir, "analytics.sqlite");
    ns = await createTestNamespace(adminKc, "built");
    await createPolicy(admin, ns, "api", { hosts: [HOST], rules: [{ name: "read", paths: ["/items/*"], methods: ["GET"], scopes: ["items:read"] }] });
    reader = await createKey(admin, ns, "reader", { owner: "acme", scopes: ["items:read"] });
    [grpcPort, metricsPort] = [await freePort(), await freePort()];
    kw = startKeyward(
      [...dataPlaneArgs({ kubeconfig, namespace: ns, grpcPort, metricsPort }), "--analytics-store=sqlite", `--analytics-sqlite-path=${file}`, "--analytics-flush-interval=100ms"],
      { nodeArgs: [NO_TYPESCRIPT], main: app.main, cwd: app.dir, env: { ...process.env, ...imageEnv() } },
    );
    await kw.ready(metricsPort);
  });

  afterAll(async () => {
    await kw.kill();
    await deleteNamespace(adminKc, ns);
    admin.close();
    dp.remove();
    expect(kw.output()).not.toContain(reader.key);
  });

  it("the flag is honest: Node started with it refuses keyward's sources", () => {
    const r = spawnSync(process.execPath, [NO_TYPESCRIPT, join(root, "src", "main.ts"), "version"], { encoding: "utf8" });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("ERR_UNKNOWN_FILE_EXTENSION");
  });

  it("allocates with jemalloc, as the image's LD_PRELOAD has it (ADR 73), with its background thread", () => {
    const maps = readFileSync(`/proc/${kw.child.pid!}/maps`, "utf8");
    expect(maps).toMatch(/libjemalloc\.so\.2$/m);
    // background_thread:true in MALLOC_CONF: the thread that returns unused pages while keyward idles.
    expect(threadsNamed(kw.child.pid!, "jemalloc_bg_thd").length).toBeGreaterThan(0);
  });

  it("runs the image's entry point from the build, not from src/", () => {
    expect(app.main).toBe(join(app.dir, "dist", "main.js"));
    expect(app.build.modules).toBeGreaterThan(100);
  });

  it("answers checks, and its analytics writer thread stores their rows (a check of no key makes none)", async () => {
    const c = authzClient(grpcPort);
    try {
      for (let i = 0; i < 3; i++) expect(summarize(await c.check(checkRequest({ host: HOST, path: `/items/${i}`, headers: { "x-api-key": reader.key } }))).httpStatus).toBe(200);
      expect(summarize(await c.check(checkRequest({ host: HOST, path: "/items/1", headers: { "x-api-key": "kw_unknown" } }))).httpStatus).toBe(401);
    } finally {
      c.close();
    }
    expect(threadsNamed(kw.child.pid!, "keyward-writer")).toHaveLength(1);
    const peek = new DatabaseSync(file, { readOnly: true });
    try {
      await eventually(() => ((peek.prepare("select count(*) as n from requests").get() as { n: number }).n === 3 ? true : undefined), 30_000, "the allowed checks' three rows in the store");
    } finally {
      peek.close();
    }
    kw.child.kill("SIGTERM");
    expect(await kw.exited).toBe(0);
  });

  it("forks --authz-workers processes from the build, and both answer checks", async () => {
    const [port, metrics] = [await freePort(), await freePort()];
    const workers = startKeyward([...dataPlaneArgs({ kubeconfig: dp.kubeconfig, namespace: ns, grpcPort: port, metricsPort: metrics }), "--authz-workers=2", "--analytics-store=off"], {
      nodeArgs: [NO_TYPESCRIPT],
      main: app.main,
      cwd: app.dir,
      env: { ...process.env, ...imageEnv() },
    });
    try {
      await workers.ready(metrics);
      for (let i = 0; i < 6; i++) {
        // A connection of its own each: the primary hands connections to its workers in turn.
        const c = authzClient(port, { ownConnection: true });
        try {
          expect(summarize(await c.check(checkRequest({ host: HOST, path: "/items/1", headers: { "x-api-key": reader.key } }))).httpStatus).toBe(200);
        } finally {
          c.close();
        }
      }
      const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
      const perWorker = [0, 1].map((w) => Number(text.match(new RegExp(`^keyward_authz_worker_checks_total\\{worker="${w}"\\} (\\d+)$`, "m"))?.[1] ?? NaN));
      expect(perWorker.every((n) => n > 0), `checks per worker: ${perWorker.join(", ")}`).toBe(true);
      workers.child.kill("SIGTERM");
      expect(await workers.exited).toBe(0);
    } finally {
      await workers.kill();
      expect(workers.output()).not.toContain(reader.key);
    }
  });

  it("reads them back through the store's reader thread, opened from the built modules", () => {
    // The store opened as keyward opens it (its writer and reader on threads of their own), from dist/.
    const url = (m: string): string => pathToFileURL(join(app.dir, "dist", m)).href;
    // The store's threads are unreferenced while idle: the interval keeps the process up meanwhile.
    const script = `
      const alive = setInterval(() => {}, 1000);
      const { openAnalyticsStore } = await import(${JSON.stringify(url("analytics/store.js"))});
      const { createLogger } = await import(${JSON.stringify(url("log.js"))});
      const store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ${JSON.stringify(file)}, postgresUrl: "", retentionMs: 86400000 * 30, rollupRetentionMs: 0, retentionIntervalMs: 0, writerThread: true }, createLogger({ sink: () => {} }));
      const top = await store.queries.topKeys({ since: ${started - 60_000}, until: ${Date.now() + 60_000} });
      await store.close();
      clearInterval(alive);
      process.stdout.write(JSON.stringify(top));`;
    const readBack = join(dir, "read-back.mjs");
    writeFileSync(readBack, script);
    const r = spawnSync(process.execPath, [NO_TYPESCRIPT, readBack], { cwd: app.dir, encoding: "utf8", timeout: 60_000 });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect((JSON.parse(r.stdout) as { namespace: string; name: string; requests: number }[]).map(({ namespace, name, requests }) => ({ namespace, name, requests }))).toEqual([{ namespace: ns, name: "reader", requests: 3 }]);
  });
});
