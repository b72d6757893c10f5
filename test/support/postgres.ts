// Throwaway PostgreSQL clusters for the analytics suites: initdb and pg_ctl
// from the Debian package (scripts/install-system-deps.sh), a data directory
// in a temporary directory, a free port on 127.0.0.1, password authentication
// over TCP. The server refuses to run as root: as root, every command runs as
// the `postgres` user the package creates, in a directory it owns.
import { execFile } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "../controlplane/controlplane.ts";

const run = promisify(execFile);

/** The newest installed PostgreSQL's bin directory, or undefined when there is none. */
export function postgresBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, "bin", "pg_ctl")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], "bin") : undefined;
}

export function havePostgres(): boolean {
  return postgresBin() !== undefined;
}

export interface PostgresCluster {
  readonly port: number;
  readonly dir: string;
  /** A postgres:// URL for the `keyward` role and database (or the given user and password). */
  url(o?: { user?: string; password?: string; database?: string; host?: string; port?: number }): string;
  /** Runs SQL as the superuser. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  /** pg_ctl start (waits until it accepts connections). */
  start(): Promise<void>;
  /** pg_ctl stop -m immediate: the server dies without a checkpoint, as on a crash. */
  kill(): Promise<void>;
  /** Stops the server and removes its directory. */
  remove(): Promise<void>;
}

export const KEYWARD_PASSWORD = "kw-Secret-pw-41";
const SUPER_PASSWORD = "super-Secret-pw-17";

export async function startPostgres(): Promise<PostgresCluster> {
  const bin = postgresBin();
  if (!bin) throw new Error("PostgreSQL is not installed: run scripts/install-system-deps.sh");
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? await run("id", ["-u", "postgres"]).then((r) => ({ uid: Number(r.stdout.trim()), gid: Number.NaN })) : undefined;
  if (owner) owner.gid = Number((await run("id", ["-g", "postgres"])).stdout.trim());
  const dir = mkdtempSync(join(tmpdir(), "keyward-pg-"));
  const data = join(dir, "data");
  const pwfile = join(dir, "pw");
  writeFileSync(pwfile, `${SUPER_PASSWORD}\n`, { mode: 0o600 });
  if (owner) {
    chownSync(dir, owner.uid, owner.gid);
    chownSync(pwfile, owner.uid, owner.gid);
  }
  const pgRun = (cmd: string, args: string[]) => (asRoot ? run("runuser", ["-u", "postgres", "--", join(bin, cmd), ...args], { cwd: dir }) : run(join(bin, cmd), args, { cwd: dir }));
  await pgRun("initdb", ["-D", data, "-U", "postgres", "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256", "--no-locale", "-E", "UTF8", "--no-sync"]);
  const port = await freePort();
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=100`;
  const url = (o: { user?: string; password?: string; database?: string; host?: string; port?: number } = {}): string =>
    `postgres://${encodeURIComponent(o.user ?? "keyward")}:${encodeURIComponent(o.password ?? KEYWARD_PASSWORD)}@${o.host ?? "127.0.0.1"}:${o.port ?? port}/${o.database ?? "keyward"}`;
  const query = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> => {
    const c = new pg.Client({ connectionString: url({ user: "postgres", password: SUPER_PASSWORD, database: "postgres" }) });
    await c.connect();
    try {
      return await c.query<R>(text, values);
    } finally {
      await c.end();
    }
  };
  const cluster: PostgresCluster = {
    port,
    dir,
    url,
    query,
    start: async () => {
      await pgRun("pg_ctl", ["-D", data, "-o", opts, "-l", join(dir, "log"), "-w", "-t", "60", "start"]);
    },
    kill: async () => {
      await pgRun("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
    },
    remove: async () => {
      await pgRun("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await cluster.start();
  await query(`create role keyward login password '${KEYWARD_PASSWORD}'`);
  await query("create database keyward owner keyward");
  return cluster;
}
