// keyward as a real process (node src/main.ts) for suites that run several:
// its output, its exit, its /metrics.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import type { KubeRest } from "../../src/k8s/rest.ts";
import { applyUsageRbac } from "../conformance/go-als/env.ts";
import { authzKubeConfig, percentile } from "../conformance/harness.ts";
import { eventually, writeKubeconfig } from "./k8s.ts";

const root = resolve(import.meta.dirname, "..", "..");

export interface KeywardProcess {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  /** Resolves once /readyz answers 200 on `metricsPort`. */
  ready(metricsPort: number, timeoutMs?: number): Promise<void>;
  /** SIGKILL unless exited. */
  kill(): Promise<void>;
}

/** A keyward process (the name the lifecycle suites use). */
export type Keyward = KeywardProcess;

/** How to start keyward other than from the sources: node's own flags, another main module (the built one, as the image runs it), its directory and environment. */
export interface StartAs {
  nodeArgs?: readonly string[];
  main?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export function startKeyward(args: readonly string[], as: StartAs = {}): KeywardProcess {
  const child = spawn(process.execPath, [...(as.nodeArgs ?? []), as.main ?? join(root, "src", "main.ts"), ...args], { cwd: as.cwd ?? root, env: as.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const collect = (b: Buffer): void => {
    out += b.toString();
  };
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);
  const exited = new Promise<number | null>((res) => {
    child.on("exit", (code) => {
      res(code);
    });
  });
  return {
    child,
    output: () => out,
    exited,
    ready: async (metricsPort, timeoutMs = 30_000) => {
      await eventually(
        async () => {
          if (child.exitCode !== null) throw new Error(`keyward exited ${child.exitCode}: ${out}`);
          return (await fetch(`http://127.0.0.1:${metricsPort}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined;
        },
        timeoutMs,
        "/readyz",
      );
    },
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
}

/**
 * The arguments of a `keyward authz` data plane on 127.0.0.1 that watches one namespace, with
 * no HTTP auth port and no usage writes: the start of every limits suite's command line.
 */
export function dataPlaneArgs(o: { kubeconfig: string; namespace: string; grpcPort: number; metricsPort: number }): string[] {
  return [
    "authz",
    `--kubeconfig=${o.kubeconfig}`,
    `--namespaces=${o.namespace}`,
    `--grpc-address=127.0.0.1:${o.grpcPort}`,
    "--http-auth-address=",
    `--metrics-address=127.0.0.1:${o.metricsPort}`,
    "--usage-status=false",
    "--usage-alerts=false",
  ];
}

/** A suite's scratch directory holding the data plane's kubeconfig. */
export interface DataPlaneKubeconfig {
  /** A fresh directory under the system's temporary one, for the suite's other files too. */
  dir: string;
  /** `dir`/kubeconfig, readable by its owner only. */
  kubeconfig: string;
  /** Deletes `dir` and everything in it. */
  remove(): void;
}

/**
 * The kubeconfig a suite's `keyward authz` processes run with: the data plane's shipped RBAC and
 * the usage rights (status and Events), a fresh token of its ServiceAccount, written into a new
 * directory named after `suite`.
 */
export async function dataPlaneKubeconfig(adminKc: KubeConfig, admin: KubeRest, suite: string): Promise<DataPlaneKubeconfig> {
  await applyUsageRbac(admin);
  const kc = await authzKubeConfig(adminKc, admin);
  const dir = mkdtempSync(join(tmpdir(), `keyward-${suite}-`));
  return {
    dir,
    kubeconfig: writeKubeconfig(join(dir, "kubeconfig"), kc),
    remove: () => {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The value of one series in a /metrics page (NaN when absent). */
export async function metricValue(metricsPort: number, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

/** The latency_ms of every decision in a keyward's output (--decision-log=stdout): time spent inside keyward per check. */
export function decisionLatencies(output: string): number[] {
  const out: number[] = [];
  for (const line of output.split("\n")) {
    if (!line.includes('"msg":"decision"')) continue;
    const m = /"latency_ms":([0-9.]+)/.exec(line);
    if (m) out.push(Number(m[1]));
  }
  return out;
}

/** The p-th percentile (nearest rank) of unsorted values. */
export function percentileOf(values: readonly number[], p: number): number {
  return percentile([...values].sort((a, b) => a - b), p);
}

/** keyward's JSON log records in its output (other lines left out). */
export function logRecords(output: string): Record<string, unknown>[] {
  return output.split("\n").flatMap((line) => {
    if (!line.startsWith("{")) return [];
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}
