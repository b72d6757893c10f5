// Runs a real nginx (Debian package, installed by scripts/install-system-deps.sh)
// in front of an upstream, asking keyward's HTTP auth endpoint with auth_request.
// The configuration is docs/authz.md's nginx recipe with ports filled in.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile, chmod } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function nginxBinary(): string | undefined {
  for (const p of ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx", "/usr/local/bin/nginx"]) if (existsSync(p)) return p;
  return undefined;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => {
        resolve(port);
      });
    });
  });
}

/** The nginx server block of the recipe: keyward at `authPort`, the application at `upstreamPort`. */
export function nginxServerConfig(listenPort: number, authPort: number, upstreamPort: number): string {
  return `
  server {
    listen 127.0.0.1:${listenPort};

    location / {
      auth_request /_keyward;
      # What keyward answered, for the upstream and for the 429 page.
      auth_request_set $kw_key_id $upstream_http_x_keyward_key_id;
      auth_request_set $kw_owner $upstream_http_x_keyward_owner;
      auth_request_set $kw_status $upstream_status;
      auth_request_set $kw_retry_after $upstream_http_retry_after;
      auth_request_set $kw_rl_limit $upstream_http_ratelimit_limit;
      auth_request_set $kw_rl_remaining $upstream_http_ratelimit_remaining;
      auth_request_set $kw_rl_reset $upstream_http_ratelimit_reset;
      # auth_request turns any status but 2xx, 401 and 403 into 500; give 429 back its meaning.
      error_page 500 = @keyward_500;

      # The key never goes upstream; the key id and owner do (replacing anything the client sent).
      proxy_set_header X-Api-Key "";
      proxy_set_header Authorization "";
      proxy_set_header X-Keyward-Key-Id $kw_key_id;
      proxy_set_header X-Keyward-Owner $kw_owner;
      proxy_pass http://127.0.0.1:${upstreamPort};
    }

    location = /_keyward {
      internal;
      proxy_pass http://127.0.0.1:${authPort}/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }

    location @keyward_500 {
      if ($kw_status = 429) {
        add_header Retry-After $kw_retry_after always;
        add_header RateLimit-Limit $kw_rl_limit always;
        add_header RateLimit-Remaining $kw_rl_remaining always;
        add_header RateLimit-Reset $kw_rl_reset always;
        return 429 '{"error":"too_many_requests"}\\n';
      }
      return 500;
    }
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
${nginxServerConfig(port, authPort, upstreamPort)}
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
