// `keyward console` and `kubectl keyward console`: the web console on
// 127.0.0.1 with the user's kubeconfig credentials (docs/console.md, Local
// mode). It prints the URL to open (with the session's secret), opens the
// browser unless --no-open, and serves until interrupted.
import { spawn } from "node:child_process";
import { parseArgs } from "node:util";
import { apiserverUpstream, usageUrlUpstream } from "../console/upstream.ts";
import { startLocalConsole, type LocalConsole, type Upstream } from "../console/local.ts";
import { ConsoleFiles } from "../console/static.ts";
import { KeywardError } from "../errors.ts";
import { openSession } from "./kubectl/session.ts";

export const CONSOLE_HELP = `Serve the web console on 127.0.0.1 with your kubeconfig's credentials.

The console shows the keys you may "get apikeys" in, their traffic, alerts and access review.
Its API calls are forwarded to the kube-apiserver's aggregated usage API
(/apis/usage.keyward.dev/v1alpha1/views/...), or with --usage-url straight to keyward's usage API
with your kubeconfig's bearer token. Nothing else of the cluster is reachable through it.

Usage:
  console [--port N] [--no-open] [--usage-url URL [--usage-ca-file FILE]] [--context NAME] [--kubeconfig FILE]

Flags:
  --port N              port on 127.0.0.1 (default: a free port)
  --open, --no-open     open the browser ($BROWSER, else xdg-open or open); default --open
  --usage-url URL       the usage API's URL (e.g. https://keyward-usage.keyward-system:9004) instead of the apiserver
  --usage-ca-file FILE  CA that signed the usage API's certificate (default: the kubeconfig cluster's CA)
  --context NAME        kubeconfig context (default: the current one)
  --kubeconfig FILE     kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)
`;

export interface ConsoleIO {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
  /** Opens the URL in a browser; default $BROWSER, xdg-open or open. */
  openBrowser?: (url: string) => void;
  /** Stops the console when aborted; default SIGINT and SIGTERM. */
  signal?: AbortSignal;
  /** Called once the console serves (tests). */
  onStarted?: (c: LocalConsole) => void;
}

/** Opens `url` with $BROWSER (its first entry; `%s` stands for the URL), else the platform's opener; never throws. */
export function openBrowser(url: string, env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform): boolean {
  const fromEnv = (env.BROWSER ?? "").split(":").find((b) => b.trim() !== "");
  let command: string | undefined;
  let args: string[];
  if (fromEnv) {
    const words = fromEnv.trim().split(/\s+/);
    command = words[0];
    args = words.slice(1).map((w) => w.replaceAll("%s", url));
    if (!fromEnv.includes("%s")) args.push(url);
  } else {
    command = platform === "darwin" ? "open" : platform === "win32" ? undefined : "xdg-open";
    args = [url];
  }
  if (!command) return false;
  try {
    const child = spawn(command, args, { detached: true, stdio: "ignore" });
    child.on("error", () => {});
    child.unref();
    return true;
  } catch {
    return false;
  }
}

interface ConsoleFlags {
  port: number;
  open: boolean;
  usageUrl?: string;
  usageCaFile?: string;
  context?: string;
  kubeconfig?: string;
  help: boolean;
}

function parseFlags(argv: readonly string[]): ConsoleFlags {
  let v;
  try {
    v = parseArgs({
      args: [...argv],
      allowPositionals: false,
      allowNegative: true,
      options: {
        port: { type: "string" },
        open: { type: "boolean", default: true },
        "usage-url": { type: "string" },
        "usage-ca-file": { type: "string" },
        context: { type: "string" },
        kubeconfig: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (err) {
    throw new KeywardError("ConfigInvalid", `console: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const port = v.port === undefined ? 0 : Number(v.port);
  if (!/^\d{1,5}$/.test(v.port ?? "0") || port > 65535) throw new KeywardError("ConfigInvalid", `console: --port ${v.port ?? ""}: a port from 0 to 65535`);
  if (v["usage-ca-file"] !== undefined && v["usage-url"] === undefined) throw new KeywardError("ConfigInvalid", "console: --usage-ca-file goes with --usage-url");
  return {
    port,
    open: v.open,
    help: v.help === true,
    ...(v["usage-url"] !== undefined ? { usageUrl: v["usage-url"] } : {}),
    ...(v["usage-ca-file"] !== undefined ? { usageCaFile: v["usage-ca-file"] } : {}),
    ...(v.context !== undefined ? { context: v.context } : {}),
    ...(v.kubeconfig !== undefined ? { kubeconfig: v.kubeconfig } : {}),
  };
}

function stopped(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal) {
      if (signal.aborted) resolve();
      else signal.addEventListener("abort", () => { resolve(); }, { once: true });
      return;
    }
    const done = (): void => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      resolve();
    };
    process.on("SIGINT", done);
    process.on("SIGTERM", done);
  });
}

/** Runs the console until stopped; returns the exit code (2 for a usage error). */
export async function consoleCommand(argv: readonly string[], io: ConsoleIO): Promise<number> {
  let flags: ConsoleFlags;
  try {
    flags = parseFlags(argv);
  } catch (err) {
    io.err(`error: ${err instanceof Error ? err.message : String(err)}\n\n${CONSOLE_HELP}`);
    return 2;
  }
  if (flags.help) {
    io.out(CONSOLE_HELP);
    return 0;
  }
  const session = await openSession({ ...(flags.kubeconfig ? { kubeconfig: flags.kubeconfig } : {}), ...(flags.context ? { context: flags.context } : {}) }, io.env);
  const upstream: Upstream = flags.usageUrl ? await usageUrlUpstream(session.kc, flags.usageUrl, flags.usageCaFile) : apiserverUpstream(session.kc);
  const local = await startLocalConsole({
    port: flags.port,
    files: new ConsoleFiles(),
    upstream,
    onUpstreamError: (err) => {
      io.err(`console: ${upstream.where}: ${err instanceof Error ? err.message : String(err)}\n`);
    },
  });
  try {
    io.out(`keyward console for context ${session.kc.getCurrentContext()}, forwarding to ${upstream.where}\n`);
    io.out(`Open ${local.url}\n(the URL holds this session's secret: do not share it). Press Ctrl-C to stop.\n`);
    if (flags.open) (io.openBrowser ?? ((url: string) => void openBrowser(url, io.env)))(local.url);
    io.onStarted?.(local);
    await stopped(io.signal);
  } finally {
    await local.stop();
  }
  return 0;
}
