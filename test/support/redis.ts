// Real redis-server processes for the limits suites: each on free ports, in a
// temporary directory, stopped by the suite. Never a system service.
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eventually } from "./k8s.ts";

const run = promisify(execFile);

/** True when redis-server and redis-cli are installed (scripts/install-system-deps.sh). */
export function haveRedis(): boolean {
  try {
    execFileSync("redis-server", ["--version"], { stdio: "ignore" });
    execFileSync("redis-cli", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once("error", () => {
      res(false);
    });
    srv.listen(port, "127.0.0.1", () => {
      srv.close(() => {
        res(true);
      });
    });
  });
}

/** A free port whose Cluster bus port (+10000) is free too. */
export async function redisPort(): Promise<number> {
  for (;;) {
    const p = 20_000 + Math.floor(Math.random() * 30_000);
    if ((await portFree(p)) && (await portFree(p + 10_000))) return p;
  }
}

export interface RedisServer {
  readonly port: number;
  readonly dir: string;
  readonly password: string | undefined;
  child: ChildProcess;
  /** redis-cli against this server; resolves to its output (never blocks the event loop, so load measured beside it stays true). */
  cli(...args: string[]): Promise<string>;
  start(): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedis(o: { password?: string; cluster?: boolean; port?: number; sentinel?: boolean; extra?: readonly string[] } = {}): Promise<RedisServer> {
  const port = o.port ?? (await redisPort());
  const dir = mkdtempSync(join(tmpdir(), "keyward-redis-"));
  const conf = [
    `port ${port}`,
    "bind 127.0.0.1",
    `dir ${dir}`,
    'save ""',
    "appendonly no",
    "daemonize no",
    ...(o.password ? [`requirepass ${o.password}`, `masterauth ${o.password}`] : []),
    ...(o.cluster ? ["cluster-enabled yes", `cluster-config-file ${join(dir, "nodes.conf")}`, "cluster-node-timeout 2000", "cluster-require-full-coverage no"] : []),
    ...(o.extra ?? []),
  ];
  writeFileSync(join(dir, "redis.conf"), `${conf.join("\n")}\n`);
  const auth = o.password ? ["--no-auth-warning", "-a", o.password] : [];
  const cli = async (...args: string[]): Promise<string> => (await run("redis-cli", ["-p", String(port), ...auth, ...args], { encoding: "utf8", timeout: 10_000 })).stdout;
  const server: RedisServer = {
    port,
    dir,
    password: o.password,
    child: undefined as unknown as ChildProcess,
    cli,
    start: async () => {
      server.child = spawn("redis-server", [join(dir, "redis.conf"), ...(o.sentinel ? ["--sentinel"] : [])], { stdio: "ignore" });
      await eventually(async () => ((await cli("ping").catch(() => "")).trim() === "PONG" ? true : undefined), 10_000, `redis-server on ${port}`);
    },
    kill: async (signal = "SIGKILL") => {
      const c = server.child;
      if (c.exitCode !== null || c.signalCode !== null) return;
      const gone = new Promise((r) => c.once("exit", r));
      c.kill(signal);
      await gone;
    },
    stop: async () => {
      if (server.child.exitCode === null && server.child.signalCode === null) {
        server.child.kill("SIGCONT");
        await server.kill("SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}

/** A Redis Cluster of `masters` masters without replicas, made with redis-cli --cluster create. */
export async function startRedisCluster(masters = 3): Promise<RedisServer[]> {
  const nodes: RedisServer[] = [];
  for (let i = 0; i < masters; i++) nodes.push(await startRedis({ cluster: true }));
  await run("redis-cli", ["--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "0", "--cluster-yes"], { encoding: "utf8", timeout: 30_000 });
  await eventually(async () => ((await Promise.all(nodes.map((n) => n.cli("cluster", "info")))).every((i) => i.includes("cluster_state:ok")) ? true : undefined), 20_000, "cluster_state:ok on every node");
  return nodes;
}
