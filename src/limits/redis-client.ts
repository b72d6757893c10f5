// Connects to the Redis that holds shared limits: one server (optionally behind
// Sentinel) or a Redis Cluster, over TLS for rediss:// addresses. Start-up waits
// until Redis answers and has the limits script, and fails with a clear error
// otherwise (a wrong address, password or TLS setting). Errors name host:port,
// never a password.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Cluster, Redis, type ClusterNode, type RedisOptions } from "ioredis";
import { KeywardError } from "../errors.ts";
import { LIMITS_SCRIPT } from "./redis-script.ts";
import type { BatchBy, RunScript } from "./redis-store.ts";

export type RedisMode = "standalone" | "sentinel" | "cluster";

export interface RedisConnectOptions {
  mode: RedisMode;
  /** redis:// or rediss:// URLs: the server, the Sentinels, or some Cluster nodes. */
  urls: readonly string[];
  /** The Sentinel master's name (mode sentinel). */
  sentinelMaster: string;
  /** A file holding the password (a mounted Secret); empty: the URL's password, if any. */
  passwordFile: string;
  /** PEM CAs that verify Redis's TLS certificate; empty: the system's. */
  caFile: string;
  /** How long start-up waits for Redis. */
  connectTimeoutMs: number;
  /** Called when an established connection reports a problem (the breaker decides what it means for checks). */
  onError?: (err: Error) => void;
}

export interface LimitsRedis {
  run: RunScript;
  /** One call per event-loop turn (one server, Sentinel), or per check (a Cluster; see redis-store.ts). */
  readonly batchBy: BatchBy;
  /** Where it connected, without credentials. */
  readonly where: string;
  close(): Promise<void>;
}

interface Address {
  host: string;
  port: number;
  tls: boolean;
  username: string | undefined;
  password: string | undefined;
  db: number;
}

function parseAddress(raw: string): Address {
  let u: URL;
  try {
    u = new URL(raw.includes("://") ? raw : `redis://${raw}`);
  } catch (err) {
    throw new KeywardError("ConfigInvalid", `--limits-redis-url: "${redact(raw)}" is not a redis:// or rediss:// URL`, { cause: err });
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw new KeywardError("ConfigInvalid", `--limits-redis-url: ${u.protocol}// is not redis:// or rediss://`);
  const db = u.pathname && u.pathname !== "/" ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new KeywardError("ConfigInvalid", `--limits-redis-url: database "${u.pathname.slice(1)}" is not a number`);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: u.port ? Number(u.port) : 6379,
    tls: u.protocol === "rediss:",
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db,
  };
}

/** A URL without its user info, for messages. */
export function redact(raw: string): string {
  return raw.replace(/\/\/[^@/]*@/, "//");
}

function readPassword(file: string): string | undefined {
  if (!file) return undefined;
  try {
    return readFileSync(file, "utf8").replace(/\r?\n$/, "");
  } catch (err) {
    throw new KeywardError("ConfigInvalid", `--limits-redis-password-file: cannot read ${file}`, { cause: err });
  }
}

/** SHA-1 of the limits script: the name EVALSHA runs it by. */
export const LIMITS_SCRIPT_SHA = createHash("sha1").update(LIMITS_SCRIPT).digest("hex");

/**
 * Runs the limits script by EVALSHA, and by EVAL once when a server does not have it yet (a
 * restarted server, a promoted replica, a new Cluster master). EVALSHA is a command ioredis knows
 * the keys of, so on a Cluster its auto-pipelining groups calls by the node that serves their
 * slot; a custom command would be grouped by its first argument (the key count).
 */
export function scriptRunner(client: Pick<Redis, "evalsha" | "eval">): RunScript {
  return (args) => {
    const [numKeys = 0, ...rest] = args;
    return client.evalsha(LIMITS_SCRIPT_SHA, numKeys, ...rest).catch((err: unknown) => {
      if (err instanceof Error && err.message.startsWith("NOSCRIPT")) return client.eval(LIMITS_SCRIPT, numKeys, ...rest);
      throw err;
    });
  };
}

export async function connectLimitsRedis(connection: RedisConnectOptions): Promise<LimitsRedis> {
  if (connection.urls.length === 0) throw new KeywardError("ConfigInvalid", "--limits-store=redis needs --limits-redis-url");
  const addrs = connection.urls.map(parseAddress);
  const first = addrs[0] as Address;
  if (connection.mode === "standalone" && addrs.length > 1) throw new KeywardError("ConfigInvalid", "--limits-redis-url: standalone mode takes one URL (name Sentinels with --limits-redis-mode=sentinel, Cluster nodes with cluster)");
  if (connection.mode === "sentinel" && !connection.sentinelMaster) throw new KeywardError("ConfigInvalid", "--limits-redis-mode=sentinel needs --limits-redis-sentinel-master");
  const password = readPassword(connection.passwordFile) ?? first.password;
  const tls = first.tls ? { ...(connection.caFile ? { ca: readFileSync(connection.caFile) } : {}), servername: first.host } : undefined;
  const common: RedisOptions = {
    username: first.username,
    password,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: connection.connectTimeoutMs,
    enableAutoPipelining: true,
    lazyConnect: true,
    keepAlive: 10_000,
    retryStrategy: (times: number) => Math.min(50 * times, 1000),
  };
  const where = `${connection.mode} ${addrs.map((a) => `${a.tls ? "rediss" : "redis"}://${a.host}:${a.port}`).join(",")}`;
  let client: Redis | Cluster;
  if (connection.mode === "cluster") {
    const nodes: ClusterNode[] = addrs.map((a) => ({ host: a.host, port: a.port }));
    const { servername: _s, ...clusterTls } = tls ?? {};
    client = new Cluster(nodes, {
      enableOfflineQueue: false,
      lazyConnect: true,
      // Each check's call is written at once. ioredis's auto-pipelining would send a turn's calls
      // to a node in one write, but it keeps one such write per node in flight and holds the
      // calls made meanwhile until its reply: a check then waits for a round trip before its own
      // (docs/benchmarks.md, "Where the tail comes from").
      enableAutoPipelining: false,
      slotsRefreshTimeout: Math.max(1000, connection.connectTimeoutMs),
      clusterRetryStrategy: (times: number) => Math.min(100 * times, 2000),
      // Each node's own connection queues while it connects (ioredis's default): the deadline bounds the wait.
      redisOptions: { username: common.username, password, connectTimeout: connection.connectTimeoutMs, keepAlive: 10_000, ...(tls ? { tls: clusterTls } : {}) },
    });
  } else if (connection.mode === "sentinel") {
    client = new Redis({
      ...common,
      sentinels: addrs.map((a) => ({ host: a.host, port: a.port })),
      name: connection.sentinelMaster,
      sentinelPassword: password,
      db: first.db,
      ...(tls ? { tls, enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
    });
  } else {
    client = new Redis({ ...common, host: first.host, port: first.port, db: first.db, ...(tls ? { tls } : {}) });
  }
  const run = scriptRunner(client);
  try {
    await ready(client, connection.connectTimeoutMs, where);
    // The first call loads the script (EVALSHA, then EVAL on NOSCRIPT): a Redis that cannot run it fails here.
    await run([0]);
  } catch (err) {
    client.disconnect();
    if (err instanceof KeywardError) throw err;
    throw new KeywardError("LimitsStoreFailed", `limits store ${where}: ${message(err)}`, { cause: err });
  }
  client.on("error", (err: Error) => connection.onError?.(err));
  return {
    run,
    batchBy: connection.mode === "cluster" ? "check" : "turn",
    where,
    close: async () => {
      await client.quit().catch(() => {
        client.disconnect();
      });
    },
  };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Resolves when the client is ready; rejects on its first error, or after timeoutMs. */
function ready(client: Redis | Cluster, timeoutMs: number, where: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer);
      client.off("ready", onReady);
      client.off("error", onError);
      if (err) reject(err);
      else resolve();
    };
    const onReady = (): void => {
      done();
    };
    const onError = (err: Error): void => {
      done(new KeywardError("LimitsStoreFailed", `limits store ${where}: ${err.message}`, { cause: err }));
    };
    const timer = setTimeout(() => {
      done(new KeywardError("LimitsStoreFailed", `limits store ${where}: not ready within ${timeoutMs}ms`));
    }, timeoutMs);
    client.once("ready", onReady);
    client.on("error", onError);
    client.connect().catch((err: unknown) => {
      onError(err instanceof Error ? err : new Error(String(err)));
    });
  });
}
