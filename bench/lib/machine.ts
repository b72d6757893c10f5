// The machine a bench ran on, recorded with every result.
import { execFileSync } from "node:child_process";
import { cpus, release, totalmem, type } from "node:os";

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  kernel: string;
  ghz?: string;
  loadAverage: string;
}

export function machine(): Machine {
  let load: string;
  try {
    load = execFileSync("cat", ["/proc/loadavg"]).toString().trim();
  } catch {
    load = "";
  }
  return {
    cpuModel: cpus()[0]?.model.trim() ?? "unknown",
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: `${type()} ${release()}`,
    loadAverage: load,
  };
}
