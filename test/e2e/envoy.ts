// Runs a real Envoy (installed into the tools cache by scripts/envoy-install.sh)
// on a configuration from deploy/envoy/, its ${...} placeholders filled in.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { networkInterfaces, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { toolsBinDir } from "../conformance/tools.ts";
import { freePort } from "./nginx.ts";

const repoRoot = resolve(import.meta.dirname, "..", "..");

/** Runs scripts/envoy-install.sh (idempotent: returns at once when Envoy is installed) and returns Envoy's path. */
export async function installEnvoy(): Promise<string> {
  await promisify(execFile)("bash", [join(repoRoot, "scripts", "envoy-install.sh")]);
  const bin = join(toolsBinDir(), "envoy");
  if (!existsSync(bin)) throw new Error(`${bin} is missing after scripts/envoy-install.sh`);
  return bin;
}

/** The file's text with every ${NAME} replaced; a placeholder left without a value is an error. */
export function fillTemplate(text: string, vars: Readonly<Record<string, string | number>>): string {
  return text.replace(/\$\{([A-Z_]+)\}/g, (_, name: string) => {
    const v = vars[name];
    if (v === undefined) throw new Error(`no value for \${${name}}`);
    return String(v);
  });
}

export interface Envoy {
  port: number;
  adminPort: number;
  /** One of Envoy's counters or gauges from its admin /stats, or undefined. */
  stat(name: string): Promise<number | undefined>;
  stop(): Promise<void>;
}

/**
 * The CIDRs a client on this machine can appear as behind Envoy: loopback, and this host's own
 * IPv4 addresses, which Envoy with use_remote_address appends to X-Forwarded-For in place of a
 * loopback peer.
 */
export function localClientSources(): string[] {
  const own = Object.values(networkInterfaces()).flatMap((list) => list ?? []).filter((a) => a.family === "IPv4" && !a.internal);
  return ["127.0.0.0/8", ...own.map((a) => `${a.address}/32`)];
}

/** A GET to 127.0.0.1:port on its own connection: the status and the body. */
export function httpGet(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false, headers }, (r) => {
      let body = "";
      r.on("data", (d: Buffer) => (body += d.toString()));
      r.on("end", () => {
        res({ status: r.statusCode ?? 0, body });
      });
    });
    req.on("error", rej);
    req.end();
  });
}

/** Starts Envoy on deploy/envoy/<file> with `vars` (LISTEN_PORT and ADMIN_PORT are picked here, LISTEN_ADDRESS is loopback unless given). */
export async function startEnvoy(file: string, vars: Readonly<Record<string, string | number>>): Promise<Envoy> {
  const dir = await mkdtemp(join(tmpdir(), "keyward-envoy-"));
  const port = await freePort();
  const adminPort = await freePort();
  const config = fillTemplate(await readFile(join(repoRoot, "deploy", "envoy", file), "utf8"), { LISTEN_ADDRESS: "127.0.0.1", ...vars, LISTEN_PORT: port, ADMIN_PORT: adminPort });
  await writeFile(join(dir, "envoy.yaml"), config);
  // Access log files are written out every 50 ms (Envoy's default is 10 s), so a test reads them at once.
  const args = ["-c", join(dir, "envoy.yaml"), "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn", "--file-flush-interval-msec", "50"];
  const child: ChildProcess = spawn(await installEnvoy(), args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => child.once("exit", () => { r(); }));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  // Ready when the admin interface says LIVE (listeners and clusters initialised).
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`envoy exited: ${stderr}`);
    }
    const ready = await httpGet(adminPort, "/ready").catch(() => undefined);
    if (ready?.status === 200 && ready.body.trim() === "LIVE") break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`envoy did not become ready: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    adminPort,
    stat: async (name) => {
      const r = await httpGet(adminPort, `/stats?filter=${encodeURIComponent(`^${name.replaceAll(".", "\\.")}$`)}`);
      const m = /: (\d+)/.exec(r.body);
      return m ? Number(m[1]) : undefined;
    },
    stop,
  };
}
