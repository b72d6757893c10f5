// keyward as a real process (node src/main.ts), its output collected.
import { spawn, type ChildProcess } from "node:child_process";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..", "..");

export interface Keyward {
  child: ChildProcess;
  /** stdout and stderr so far. */
  output: () => string;
  /** The exit code (null when a signal ended it). */
  exited: Promise<number | null>;
}

export function startKeyward(args: string[]): Keyward {
  const child = spawn(process.execPath, [join(root, "src", "main.ts"), ...args], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
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
  return { child, output: () => out, exited };
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
