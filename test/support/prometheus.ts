// A real Prometheus server (Debian's `prometheus` package, installed with promtool
// by scripts/install-system-deps.sh) for the suites: its own temporary directory,
// a free port, short scrape and evaluation intervals, keyward's rules scaled down
// in time (scaledRules). Also a TCP relay that can hold traffic, to cut a process
// off from the apiserver without stopping either.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { freePort } from "../controlplane/controlplane.ts";
import { eventually } from "./k8s.ts";

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 31_536_000_000 };

/** A Prometheus duration ("1h30m", "5m", "250ms") in milliseconds. */
export function durationMs(text: string): number {
  let ms = 0;
  let rest = text;
  while (rest !== "") {
    const m = /^(\d+)(ms|s|m|h|d|w|y)/.exec(rest);
    if (!m) throw new Error(`not a Prometheus duration: ${text}`);
    ms += Number(m[1]) * (UNITS_MS[m[2] ?? ""] ?? 0);
    rest = rest.slice(m[0].length);
  }
  return ms;
}

/** Milliseconds as a Prometheus duration: whole seconds when they are, else milliseconds. */
export function formatDuration(ms: number): string {
  const whole = Math.max(1, Math.round(ms));
  return whole % 1000 === 0 ? `${whole / 1000}s` : `${whole}ms`;
}

const DURATION = String.raw`\d+(?:ms|s|m|h|d|w|y)(?:\d+(?:ms|s|m|h|d|w|y))*`;
const scale = (d: string, factor: number): string => formatDuration(durationMs(d) / factor);

/**
 * A PromQL expression with every time span divided by `factor`: range selectors
 * and subqueries (`[5m]`, `[1h:1m]`), offsets (`offset 1h`), and the ages compared
 * with a staleness gauge (`*_staleness_seconds > 300`, a time span in seconds).
 */
export function scaleExpr(expr: string, factor: number): string {
  return expr
    .replace(new RegExp(String.raw`\[(${DURATION})(?::(${DURATION}))?\]`, "g"), (_m, range: string, step: string | undefined) =>
      step === undefined ? `[${scale(range, factor)}]` : `[${scale(range, factor)}:${scale(step, factor)}]`,
    )
    .replace(new RegExp(String.raw`\boffset\s+(${DURATION})`, "g"), (_m, d: string) => `offset ${scale(d, factor)}`)
    .replace(/(_staleness_seconds\b[^\n]*?>=?\s*)(\d+(?:\.\d+)?)/g, (_m, left: string, n: string) => `${left}${Number(n) / factor}`);
}

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  [k: string]: unknown;
}
export interface RuleFile {
  groups: { name: string; interval?: string; rules: Rule[] }[];
}

/**
 * keyward's rule file with time divided by `factor`, mechanically: every `for:`,
 * every group `interval:` and every span in an expression (scaleExpr). Thresholds
 * on rates, ratios and latencies stay as shipped, so an alert fires in the copy on
 * the same conditions as in the original, `factor` times sooner.
 */
export function scaledRules(text: string, factor: number): string {
  const file = parse(text) as RuleFile;
  for (const g of file.groups) {
    if (g.interval !== undefined) g.interval = scale(g.interval, factor);
    for (const r of g.rules) {
      r.expr = scaleExpr(r.expr, factor);
      if (r.for !== undefined) r.for = scale(r.for, factor);
    }
  }
  return stringify(file, { lineWidth: 0 });
}

export interface PrometheusAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: "pending" | "firing";
  value: string;
}

export interface PrometheusServer {
  url: string;
  alerts(): Promise<PrometheusAlert[]>;
  /** An instant query's vector, as [labels, value] pairs. */
  query(promql: string): Promise<[Record<string, string>, number][]>;
  /** Polls an instant query until it returns one sample, and resolves with its value. */
  value(promql: string, timeoutMs?: number): Promise<number>;
  /** Polls /api/v1/alerts until an alert named `alertname` with `labels` fires, and resolves with it. */
  firing(alertname: string, labels?: Record<string, string>, timeoutMs?: number): Promise<PrometheusAlert>;
  output(): string;
  stop(): Promise<void>;
}

export interface PrometheusOptions {
  /** Scrape jobs: name and the 127.0.0.1 ports serving /metrics. */
  jobs: { name: string; ports: number[] }[];
  /** Rule file contents (already scaled). */
  rules: string;
  scrapeInterval?: string;
  evaluationInterval?: string;
}

/** Starts Prometheus on a free port and waits until it is ready. */
export async function startPrometheus(o: PrometheusOptions): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-prometheus-"));
  writeFileSync(join(dir, "keyward.rules.yaml"), o.rules);
  const config = {
    global: { scrape_interval: o.scrapeInterval ?? "1s", scrape_timeout: o.scrapeInterval ?? "1s", evaluation_interval: o.evaluationInterval ?? "1s" },
    rule_files: [join(dir, "keyward.rules.yaml")],
    scrape_configs: o.jobs.map((j) => ({ job_name: j.name, static_configs: [{ targets: j.ports.map((p) => `127.0.0.1:${p}`) }] })),
  };
  writeFileSync(join(dir, "prometheus.yml"), stringify(config));
  const port = await freePort();
  const child: ChildProcess = spawn(
    "prometheus",
    [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  const collect = (b: Buffer): void => {
    out += b.toString();
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const exited = new Promise<void>((res) => child.on("exit", () => { res(); }));
  const url = `http://127.0.0.1:${port}`;
  await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`prometheus exited ${child.exitCode}: ${out}`);
      return (await fetch(`${url}/-/ready`).catch(() => undefined))?.status === 200 ? true : undefined;
    },
    30_000,
    "prometheus /-/ready",
  );
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${url}${path}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== "success") throw new Error(`prometheus ${path}: ${body.error ?? res.status}`);
    return body.data;
  };
  const query = async (promql: string): Promise<[Record<string, string>, number][]> =>
    (await api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(`/api/v1/query?query=${encodeURIComponent(promql)}`)).result.map((r) => [
      r.metric,
      Number(r.value[1]),
    ]);
  const alerts = async (): Promise<PrometheusAlert[]> => (await api<{ alerts: PrometheusAlert[] }>("/api/v1/alerts")).alerts;
  return {
    url,
    alerts,
    query,
    value: (promql, timeoutMs = 30_000) =>
      eventually(
        async () => {
          const v = await query(promql);
          return v.length === 1 ? v[0]?.[1] : undefined;
        },
        timeoutMs,
        promql,
      ),
    firing: (alertname, labels = {}, timeoutMs = 60_000) =>
      eventually(
        async () =>
          (await alerts()).find((a) => a.state === "firing" && a.labels.alertname === alertname && Object.entries(labels).every(([k, v]) => a.labels[k] === v)),
        timeoutMs,
        `${alertname} to fire`,
      ),
    output: () => out,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface HoldingRelay {
  port: number;
  /** Stops passing bytes either way (they are kept, not dropped); new connections wait too. */
  hold(): void;
  /** Passes everything kept and carries on. */
  release(): void;
  close(): Promise<void>;
}

/** A TCP relay on 127.0.0.1 to `target`: a network partition on demand, TLS passing through untouched. */
export async function startHoldingRelay(target: { host: string; port: number }): Promise<HoldingRelay> {
  let held = false;
  const pending: (() => void)[] = [];
  const sockets = new Set<Socket>();
  /** Forwards `from`'s bytes to `to`, keeping them while held. */
  const forward = (from: Socket, to: Socket): void => {
    from.on("data", (chunk: Buffer) => {
      if (held) pending.push(() => to.write(chunk));
      else to.write(chunk);
    });
    from.on("end", () => {
      if (held) pending.push(() => to.end());
      else to.end();
    });
  };
  const server: Server = createServer((client) => {
    const upstream = createConnection(target);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => s.destroy());
      s.on("close", () => {
        sockets.delete(s);
        (s === client ? upstream : client).destroy();
      });
    }
    forward(client, upstream);
    forward(upstream, client);
  });
  const port = await new Promise<number>((res, rej) => {
    server.once("error", rej);
    server.listen(0, "127.0.0.1", () => {
      const a = server.address();
      if (a === null || typeof a === "string") rej(new Error("no port"));
      else res(a.port);
    });
  });
  return {
    port,
    hold: () => {
      held = true;
    },
    release: () => {
      held = false;
      for (const f of pending.splice(0)) f();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((res) => server.close(() => { res(); }));
    },
  };
}
