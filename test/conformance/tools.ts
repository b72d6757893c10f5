// Locates (building once, through scripts/tools-build.sh) the conformance tools:
// grpcurl and the Go client built on go-control-plane's Envoy types.
import { execFile } from "node:child_process";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { PROTO_ROOT } from "../../src/authz/proto.ts";
import { envoyIncludeDirs } from "../../src/util/envoy-protos.ts";
import { run as runProgram } from "../support/run.ts";

const repoRoot = resolve(import.meta.dirname, "..", "..");

export function toolsBinDir(): string {
  const cache = process.env.KEYWARD_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "keyward");
  return join(cache, "tools", "bin");
}

/** Runs scripts/tools-build.sh (idempotent; minutes only the first time). */
export async function buildTools(): Promise<string> {
  await promisify(execFile)("bash", [join(repoRoot, "scripts", "tools-build.sh")], { maxBuffer: 16 << 20 });
  return toolsBinDir();
}

/** Runs a program with `input` on stdin; resolves with stdout, rejects with stderr on a non-zero exit. */
export async function run(cmd: string, args: string[], input: string): Promise<string> {
  const r = await runProgram(cmd, args, { input });
  if (r.code !== 0) throw new Error(`${cmd} exited ${String(r.code)}: ${r.stderr}`);
  return r.stdout;
}

/**
 * grpcurl arguments that load keyward's own protos (and Envoy's imports) instead of reflection;
 * `transport` replaces -plaintext with TLS flags (-cacert, -cert, -key).
 */
export function grpcurlProtoArgs(proto: string, transport: string[] = ["-plaintext"]): string[] {
  return [...transport, "-import-path", PROTO_ROOT, ...envoyIncludeDirs().flatMap((d) => ["-import-path", d]), "-proto", proto];
}
