#!/usr/bin/env node
// keyward's command line. This file only wires: parse config, build clients,
// start the roles as parts of one lifecycle (src/lifecycle), which stops them
// on SIGTERM/SIGINT.
import cluster from "node:cluster";
import { readFileSync } from "node:fs";
import { enableCompileCache } from "node:module";
import type { KubeConfig } from "@kubernetes/client-node";
import { Registry, collectDefaultMetrics } from "prom-client";
import { scanPaths } from "./cli/scan.ts";
import { configMarkdown, loadConfig, SETTINGS, type Config } from "./config/config.ts";
import { isKeywardError, KeywardError } from "./errors.ts";
import type { KubeRest } from "./k8s/rest.ts";
import { loadKubeConfigWithoutGeneratedClient } from "./k8s/slim-load.ts";
import { Lifecycle } from "./lifecycle/lifecycle.ts";
import { createLogger, type Level, type Logger } from "./log.ts";
import type { MetricsSource } from "./metrics/server.ts";
import { loadHttpWithoutWebSocket } from "./util/http-facade.ts";
import type { UsageHandle } from "./usage/service.ts";
import type { AnalyticsStore } from "./analytics/store.ts";

const USAGE = `keyward: API keys as Kubernetes resources

usage: keyward <command> [flags]

commands:
  run            operator and ext_authz server in one process (the embedded default)
  operator       the operator only: issues, rotates, expires and disables keys
  authz          the ext_authz server only (needs no access to Secrets)
  install-crds   apply keyward's CRDs to the cluster and wait until they are served
  scan PATH...   find keyward API keys (valid checksum) in files; exit 1 if any
  usage [VIEW]   the analytics store's views: keys, timeline, status, endpoints, countries, networks (docs/usage.md)
  review         the access review: unused keys and scopes, stale, expiring and ownerless keys (docs/usage.md)
  console        the web console on 127.0.0.1 with your kubeconfig's credentials (docs/console.md)
  config         list every setting (--markdown for the documentation table)
  version        print the version

Every setting is a flag and an environment variable: run "keyward config".`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/** What serve hands the wiring of each role. */
interface Serving {
  config: Config;
  kc: KubeConfig;
  log: Logger;
  registry: Registry;
  lc: Lifecycle;
}

/** A role's own client (its own request pacing and counters), closed once the role has stopped. */
async function roleClient(s: Serving, role: string): Promise<KubeRest> {
  const { KubeRest } = await import("./k8s/rest.ts");
  const rest = new KubeRest(s.kc, { qps: s.config.kubeQps, burst: s.config.kubeBurst });
  s.lc.add(`${role} client`, {
    stop: () => {
      rest.close();
      return Promise.resolve();
    },
  });
  return rest;
}

async function serveOperator(s: Serving): Promise<void> {
  const { startOperator } = await import("./operator/operator.ts");
  const rest = await roleClient(s, "operator");
  await s.lc.start("operator", () => startOperator({ config: s.config, kc: s.kc, rest, log: s.log.child({ component: "operator" }), registry: s.registry }));
}

/**
 * The analytics store usage writes its rows into (docs/usage.md, Store); none with --analytics-store=off.
 * It stops after usage has written what it holds. Its writer thread opens the store while the rest
 * starts (ADR 61): the process is Ready only once it has, and its failure fails start-up.
 */
async function startAnalyticsStore(s: Serving): Promise<AnalyticsStore | undefined> {
  if (s.config.analyticsStore === "off") return undefined;
  const { analyticsStoreOptions, startAnalyticsStore: start } = await import("./analytics/store.ts");
  const options = analyticsStoreOptions(s.config);
  if (!options) return undefined;
  const log = s.log.child({ component: "analytics" });
  const { store } = await s.lc.start("analytics store", async () => {
    // Writes run on their own thread, off the one answering checks (ADR 56).
    const started = await start({ ...options, writerThread: true }, log);
    let open = false;
    started.opened.then(
      () => {
        open = true;
        log.info("analytics store open", { store: started.store.kind, where: started.store.where });
      },
      (err: unknown) => {
        if (!s.lc.isStopping) failedStart(err);
      },
    );
    return { store: started.store, stop: () => started.store.close(), ready: () => open };
  });
  return store;
}

/** The usage API next to the store (docs/usage.md, Usage API), with --usage-api-address; the hosted console with --console-address (docs/console.md). */
async function serveUsageApi(s: Serving, store: AnalyticsStore | undefined, usage: UsageHandle): Promise<void> {
  if ((!s.config.usageApiAddress && !s.config.consoleAddress) || !store) return;
  const { startUsageApi } = await import("./usage/api.ts");
  const rest = await roleClient(s, "usage API");
  await s.lc.start("usage API", () => startUsageApi({ config: s.config, rest, queries: store.queries, live: () => usage.apiKeys(), log: s.log.child({ component: "usage-api" }) }));
}

/** The heap collected and compacted once the data plane has listed, before it is ready (ADR 0067). */
const settleHeap = async (): Promise<boolean> => (await import("./util/heap.ts")).compactHeap();

/** Usage and the data plane, in this process or in worker processes; returns what /metrics serves. */
async function serveDataPlane(s: Serving, workers: number): Promise<MetricsSource> {
  const { startUsage } = await import("./usage/service.ts");
  // Usage has its own client, so its status writes never delay the data plane's watches.
  const usageRest = await roleClient(s, "usage");
  const rest = workers > 1 ? undefined : await roleClient(s, "authz");
  // One ApiKey watch for usage and the data plane when both run in this process (src/apikeys);
  // the key index joins it before usage starts it (ADR 0060).
  const apiKeys = rest && (await import("./apikeys/watch.ts")).sharedApiKeyWatch({ kc: s.kc, rest, config: s.config });
  const index = apiKeys && (await import("./authz/shared-index.ts")).joinSharedApiKeyWatch(apiKeys, s.log.child({ component: "authz" }));
  const analytics = await startAnalyticsStore(s);
  const usage = await s.lc.start("usage", () =>
    startUsage({ config: s.config, kc: s.kc, rest: usageRest, log: s.log.child({ component: "usage" }), registry: s.registry, apiKeys, ...(analytics ? { analyticsWriter: analytics, alertQueries: analytics.alerts } : {}) }),
  );
  await serveUsageApi(s, analytics, usage);
  if (!rest) return serveAuthzWorkers(s, usage);
  const { startAuthz } = await import("./authz/service.ts");
  const authz = await s.lc.start("authz", () =>
    startAuthz({
      config: s.config,
      kc: s.kc,
      rest,
      log: s.log.child({ component: "authz" }),
      registry: s.registry,
      apiKeys: index,
      settleHeap,
      onDecision: (front, d, seconds, input, cancelled) => {
        usage.onDecision(front, d, seconds, input, cancelled);
      },
    }),
  );
  s.log.info("ext_authz serving", { grpcPort: authz.grpcPort, httpPort: authz.httpPort });
  return s.registry;
}

/** The primary of `keyward authz --authz-workers`: usage, /metrics and the workers; each worker runs startAuthz (ADR 22). */
async function serveAuthzWorkers(s: Serving, usage: UsageHandle): Promise<MetricsSource> {
  const { startAuthzWorkers } = await import("./authz/authz-workers.ts");
  const log = s.log.child({ component: "authz" });
  const onFatal = (err: Error): void => {
    s.log.error("ext_authz workers failed", { err });
    void s.lc.shutdown("workers failed", 1);
  };
  const pool = await s.lc.start("authz workers", () => Promise.resolve(startAuthzWorkers({ config: s.config, log, registry: s.registry, usage, onFatal })));
  pool.started.then(
    () => {
      const info = pool.workers()[0]?.info as { grpcPort?: number; httpPort?: number } | undefined;
      s.log.info("ext_authz serving", { grpcPort: info?.grpcPort, httpPort: info?.httpPort, workers: s.config.authzWorkers });
    },
    (err: unknown) => {
      if (s.lc.isStopping) return;
      s.log.error("ext_authz workers did not start", { err });
      void s.lc.shutdown("workers did not start", 1);
    },
  );
  return pool;
}

async function serveMetrics(s: Serving, source: MetricsSource): Promise<void> {
  const address = s.config.metricsAddress;
  if (!address) return;
  const { startMetricsServer } = await import("./metrics/server.ts");
  await s.lc.start("metrics server", async () => {
    const server = await startMetricsServer(address, source, { ready: () => s.lc.ready() });
    return {
      stop: () =>
        new Promise<void>((r) => {
          server.close(() => {
            r();
          });
        }),
    };
  });
  s.log.info("metrics serving", { address });
}

async function serve(command: "run" | "operator" | "authz", config: Config, log: Logger): Promise<void> {
  if (command === "run" && config.authzWorkers > 1) {
    throw new KeywardError("ConfigInvalid", `--authz-workers=${config.authzWorkers}: keyward run serves checks in one process; run the data plane as keyward authz to use several`);
  }
  const workers = command === "authz" ? config.authzWorkers : 1;
  const { loadKubeConfig } = await import("./k8s/client.ts");
  const kc = loadKubeConfig(config.kubeconfig || undefined);
  if (workers > 1 && cluster.isWorker) {
    // A worker process forked by the `keyward authz` primary (src/authz/authz-workers.ts).
    const { runAuthzWorker } = await import("./authz/authz-workers.ts");
    await runAuthzWorker(config, kc, log);
    return;
  }
  // SIGTERM/SIGINT handlers first: a signal during a cache sync stops what has started.
  const lc = new Lifecycle({ log });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const s: Serving = { config, kc, log, registry, lc };
  if (command !== "authz") await serveOperator(s);
  const source = command === "operator" ? registry : await serveDataPlane(s, workers);
  await serveMetrics(s, source);
}

/** A start-up error: said on stderr (a KeywardError as its code and message), and the process exits 1. */
function failedStart(err: unknown): never {
  const msg = isKeywardError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`keyward: ${msg}\n`);
  process.exit(1);
}

async function main(argv: string[]): Promise<number> {
  const major = Number(process.versions.node.split(".")[0]);
  if (major < 24) {
    process.stderr.write(`keyward needs Node.js 24 or newer (this is ${process.version}); run it through npm or node_modules/.bin/node\n`);
    return 2;
  }
  // Start-up (ADR 0034): what Node compiles, TypeScript stripped, is cached on disk for
  // the next start (NODE_COMPILE_CACHE names the directory; NODE_DISABLE_COMPILE_CACHE=1
  // turns it off), KubeConfig loads without the generated API client and undici, and
  // node:http without the WebSocket classes (ADR 0060). All before the roles' modules load,
  // on demand, below: nothing this file imports statically imports node:http.
  enableCompileCache();
  loadHttpWithoutWebSocket();
  loadKubeConfigWithoutGeneratedClient();
  const [command, ...rest] = argv;
  if (!command || command === "help" || command === "--help" || command === "-h") {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  if (command === "usage") {
    const { usageCommand } = await import("./cli/usage.ts");
    return usageCommand(rest, process.env, (s) => process.stdout.write(s));
  }
  if (command === "console") {
    const { consoleCommand } = await import("./cli/console.ts");
    return consoleCommand(rest, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), env: process.env });
  }
  if (command === "review") {
    const { reviewCommand } = await import("./cli/review-command.ts");
    return reviewCommand(rest, process.env, (s) => process.stdout.write(s));
  }
  const markdown = command === "config" && rest.includes("--markdown");
  const { config, args } = loadConfig(
    rest.filter((a) => !(markdown && a === "--markdown")),
    process.env,
  );
  const log = createLogger({ level: config.logLevel as Level });
  switch (command) {
    case "version":
      console.log(version());
      return 0;
    case "config":
      if (markdown) process.stdout.write(configMarkdown());
      else for (const [name, st] of Object.entries(SETTINGS)) console.log(`--${st.flag} (${st.env}) = ${JSON.stringify(config[name as keyof Config])}  ${st.doc}`);
      return 0;
    case "scan": {
      const found = await scanPaths(args.length ? args : ["."]);
      for (const f of found) console.log(`${f.file}:${f.line}: keyward API key ${f.keyId} (prefix ${f.prefix})`);
      if (found.length) process.stderr.write(`${found.length} keyward API key(s) found; rotate them and remove them from these files\n`);
      return found.length ? 1 : 0;
    }
    case "install-crds": {
      const [{ loadKubeConfig }, { installCrds }, { KubeRest }] = await Promise.all([import("./k8s/client.ts"), import("./k8s/apply.ts"), import("./k8s/rest.ts")]);
      const r = new KubeRest(loadKubeConfig(config.kubeconfig || undefined));
      await installCrds(r);
      r.close();
      console.log("keyward CRDs installed");
      return 0;
    }
    case "run":
    case "operator":
    case "authz":
      await serve(command, config, log);
      return -1; // keep running
    default:
      process.stderr.write(`unknown command "${command}"\n\n${USAGE}\n`);
      return 2;
  }
}

main(process.argv.slice(2))
  .then((code) => {
    if (code >= 0) process.exitCode = code;
  })
  .catch((err: unknown) => {
    // The stop sequence began during start-up: the lifecycle ends the process.
    if (isKeywardError(err, "Stopping")) return;
    failedStart(err);
  });
