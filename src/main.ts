#!/usr/bin/env node
// keyward's command line. This file only wires: parse config, build clients,
// start the roles, stop them on SIGTERM/SIGINT.
import cluster from "node:cluster";
import { readFileSync } from "node:fs";
import { Registry, collectDefaultMetrics } from "prom-client";
import { scanPaths } from "./cli/scan.ts";
import { configMarkdown, loadConfig, SETTINGS, type Config } from "./config/config.ts";
import { isKeywardError, KeywardError } from "./errors.ts";
import { installCrds } from "./k8s/apply.ts";
import { loadKubeConfig } from "./k8s/client.ts";
import { KubeRest } from "./k8s/rest.ts";
import { createLogger, type Level, type Logger } from "./log.ts";
import { startMetricsServer, type MetricsSource } from "./metrics/server.ts";
import { startOperator } from "./operator/operator.ts";

const USAGE = `keyward: API keys as Kubernetes resources

usage: keyward <command> [flags]

commands:
  run            operator and ext_authz server in one process (the embedded default)
  operator       the operator only: issues, rotates, expires and disables keys
  authz          the ext_authz server only (needs no access to Secrets)
  install-crds   apply keyward's CRDs to the cluster and wait until they are served
  scan PATH...   find keyward API keys (valid checksum) in files; exit 1 if any
  config         list every setting (--markdown for the documentation table)
  version        print the version

Every setting is a flag and an environment variable: run "keyward config".`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

async function serve(command: "run" | "operator" | "authz", config: Config, log: Logger): Promise<void> {
  if (command === "run" && config.authzWorkers > 1) {
    throw new KeywardError("ConfigInvalid", `--authz-workers=${config.authzWorkers}: keyward run serves checks in one process; run the data plane as keyward authz to use several`);
  }
  const workers = command === "authz" ? config.authzWorkers : 1;
  const kc = loadKubeConfig(config.kubeconfig || undefined);
  if (workers > 1 && cluster.isWorker) {
    // A worker process forked by the `keyward authz` primary below (src/authz/workers.ts).
    const { runAuthzWorker } = await import("./authz/workers.ts");
    await runAuthzWorker(config, kc, log);
    return;
  }
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  let metricsSource: MetricsSource = registry;
  const stops: (() => Promise<void>)[] = [];
  const readiness: (() => boolean)[] = [];

  let stopping = false;
  const shutdown = (signal: string, code = 0): void => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    void (async () => {
      for (const stop of stops.reverse()) {
        await stop().catch((err: unknown) => {
          log.warn("error while stopping", { err });
        });
      }
      process.exit(code);
    })();
  };

  if (command === "run" || command === "operator") {
    const rest = new KubeRest(kc, { qps: config.kubeQps, burst: config.kubeBurst });
    const op = await startOperator({ config, kc, rest, log: log.child({ component: "operator" }), registry });
    stops.push(() => op.stop());
    stops.push(() => {
      rest.close();
      return Promise.resolve();
    });
    readiness.push(() => op.ready());
  }
  if (command === "run" || command === "authz") {
    const { startUsage } = await import("./usage/service.ts");
    // Usage has its own client, so its status writes never delay the data plane's watches.
    const usageRest = new KubeRest(kc, { qps: config.kubeQps, burst: config.kubeBurst });
    const usage = await startUsage({ config, kc, rest: usageRest, log: log.child({ component: "usage" }), registry });
    stops.push(() => {
      usageRest.close();
      return Promise.resolve();
    });
    stops.push(() => usage.stop());
    readiness.push(() => usage.ready());
    if (workers > 1) {
      // The primary: usage, /metrics and the workers; each worker runs startAuthz (ADR 22).
      const { startAuthzWorkers } = await import("./authz/workers.ts");
      const pool = startAuthzWorkers({
        config,
        log: log.child({ component: "authz" }),
        registry,
        usage,
        onFatal: (err) => {
          log.error("ext_authz workers failed", { err });
          shutdown("workers failed", 1);
        },
      });
      pool.started.then(
        () => {
          const info = pool.workers()[0]?.info as { grpcPort?: number; httpPort?: number } | undefined;
          log.info("ext_authz serving", { grpcPort: info?.grpcPort, httpPort: info?.httpPort, workers });
        },
        (err: unknown) => {
          if (stopping) return;
          log.error("ext_authz workers did not start", { err });
          shutdown("workers did not start", 1);
        },
      );
      stops.push(() => pool.stop());
      readiness.push(() => pool.ready());
      metricsSource = pool;
    } else {
      const { startAuthz } = await import("./authz/service.ts");
      const rest = new KubeRest(kc, { qps: config.kubeQps, burst: config.kubeBurst });
      const authz = await startAuthz({
        config,
        kc,
        rest,
        log: log.child({ component: "authz" }),
        registry,
        onDecision: (front, d, seconds, input, cancelled) => {
          usage.onDecision(front, d, seconds, input, cancelled);
        },
      });
      log.info("ext_authz serving", { grpcPort: authz.grpcPort, httpPort: authz.httpPort });
      stops.push(() => authz.stop());
      stops.push(() => {
        rest.close();
        return Promise.resolve();
      });
      readiness.push(() => authz.ready());
    }
  }
  if (config.metricsAddress) {
    const server = await startMetricsServer(config.metricsAddress, metricsSource, { ready: () => readiness.every((r) => r()) });
    stops.push(
      () =>
        new Promise<void>((r) => {
          server.close(() => {
            r();
          });
        }),
    );
    log.info("metrics serving", { address: config.metricsAddress });
  }

  process.on("SIGTERM", () => {
    shutdown("SIGTERM");
  });
  process.on("SIGINT", () => {
    shutdown("SIGINT");
  });
}

async function main(argv: string[]): Promise<number> {
  const major = Number(process.versions.node.split(".")[0]);
  if (major < 24) {
    process.stderr.write(`keyward needs Node.js 24 or newer (this is ${process.version}); run it through npm or node_modules/.bin/node\n`);
    return 2;
  }
  const [command, ...rest] = argv;
  if (!command || command === "help" || command === "--help" || command === "-h") {
    console.log(USAGE);
    return command ? 0 : 2;
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
    const msg = isKeywardError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`keyward: ${msg}\n`);
    process.exit(1);
  });
