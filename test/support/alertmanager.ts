// A throwaway Alertmanager for the alert suites: the Debian package's binary
// (scripts/install-system-deps.sh), one receiver that sends nowhere, its data
// in a temporary directory, clustering off, on a free port of 127.0.0.1.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../controlplane/controlplane.ts";
import { eventually } from "./k8s.ts";

const BIN = "/usr/bin/prometheus-alertmanager";

export function haveAlertmanager(): boolean {
  return existsSync(BIN);
}

/** An alert as GET /api/v2/alerts answers it (the fields the suites read). */
export interface GettableAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  status: { state: string };
}

export interface Alertmanager {
  readonly url: string;
  alerts(): Promise<GettableAlert[]>;
  stop(): Promise<void>;
}

export async function startAlertmanager(): Promise<Alertmanager> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-am-"));
  const config = join(dir, "alertmanager.yml");
  writeFileSync(config, 'route:\n  receiver: "nowhere"\nreceivers:\n  - name: "nowhere"\n');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const output: string[] = [];
  const proc: ChildProcess = spawn(BIN, [`--config.file=${config}`, `--storage.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--cluster.listen-address="], { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout?.on("data", (b: Buffer) => output.push(b.toString()));
  proc.stderr?.on("data", (b: Buffer) => output.push(b.toString()));
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((res) => proc.once("exit", res));
      proc.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await eventually(async () => {
      if (proc.exitCode !== null) throw new Error(`alertmanager exited: ${output.join("")}`);
      const res = await fetch(`${url}/-/ready`).catch(() => undefined);
      return res?.ok ? true : undefined;
    }, 20_000, "alertmanager ready");
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    alerts: async () => {
      const res = await fetch(`${url}/api/v2/alerts`);
      if (!res.ok) throw new Error(`GET /api/v2/alerts: ${res.status}`);
      return (await res.json()) as GettableAlert[];
    },
    stop,
  };
}
