// Runs a real nginx (Debian package, installed by scripts/install-system-deps.sh)
// in front of an upstream, asking keyward's HTTP auth endpoint with auth_request.
// The configuration is the shipped recipe (deploy/nginx/keyward.conf, also shown in
// docs/authz.md) with addresses filled in.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile, chmod } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../controlplane/controlplane.ts";

export function nginxBinary(): string | undefined {
  for (const p of ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx", "/usr/local/bin/nginx"]) if (existsSync(p)) return p;
  return undefined;
}

export { freePort };

/** The shipped recipe, deploy/nginx/keyward.conf, as users copy it. */
export const NGINX_RECIPE = join(import.meta.dirname, "..", "..", "deploy", "nginx", "keyward.conf");

/** Replaces the one occurrence of `from` in `text`; throws if it is not there exactly once. */
function replaceOnce(text: string, from: string, to: string): string {
  const at = text.indexOf(from);
  if (at === -1 || text.indexOf(from, at + 1) !== -1) throw new Error(`${NGINX_RECIPE}: expected "${from}" exactly once`);
  return text.slice(0, at) + to + text.slice(at + from.length);
}

/** The nginx server block: the recipe with keyward at `authPort` and the application at `upstreamPort`. */
export async function nginxServerConfig(listenPort: number, authPort: number, upstreamPort: number): Promise<string> {
  let recipe = await readFile(NGINX_RECIPE, "utf8");
  recipe = replaceOnce(recipe, "http://keyward-authz.keyward-system.svc:9002/auth", `http://127.0.0.1:${authPort}/auth`);
  recipe = replaceOnce(recipe, "proxy_pass http://app$kw_upstream_uri;", `proxy_pass http://127.0.0.1:${upstreamPort}$kw_upstream_uri;`);
  return `
  server {
    listen 127.0.0.1:${listenPort};
${recipe}
  }`;
}

export interface Nginx {
  port: number;
  dir: string;
  errorLog(): Promise<string>;
  stop(): Promise<void>;
}

export async function startNginx(authPort: number, upstreamPort: number): Promise<Nginx> {
  const bin = nginxBinary();
  if (!bin) throw new Error("nginx is not installed: run scripts/install-system-deps.sh (make setup does)");
  const dir = await mkdtemp(join(tmpdir(), "keyward-nginx-"));
  await chmod(dir, 0o755);
  await mkdir(join(dir, "tmp"), { mode: 0o777 });
  const port = await freePort();
  const conf = `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 256; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
${await nginxServerConfig(port, authPort, upstreamPort)}
}
`;
  await writeFile(join(dir, "nginx.conf"), conf);
  const child: ChildProcess = spawn(bin, ["-p", dir, "-c", join(dir, "nginx.conf"), "-g", "daemon off;"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => { resolve(); }));
  // Ready when the port accepts connections.
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${stderr}`);
    const ok = await new Promise<boolean>((resolve) => {
      const sock = connect(port, "127.0.0.1");
      sock.once("connect", () => {
        sock.destroy();
        resolve(true);
      });
      sock.once("error", () => {
        resolve(false);
      });
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`nginx did not listen on ${port}: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    dir,
    errorLog: () => readFile(join(dir, "error.log"), "utf8").catch(() => ""),
    stop: async () => {
      if (child.exitCode === null) {
        child.kill("SIGQUIT");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
