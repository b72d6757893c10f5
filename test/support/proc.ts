// A process's or thread's /proc/PID/stat (Linux), read past its command name, which may hold
// spaces and parentheses: tests and benches read CPU times, states and nice values from it.
import { readdirSync, readFileSync } from "node:fs";

/**
 * The fields of /proc/`of`/stat after `(comm)`: [0] is the state, the 3rd field of proc(5), so
 * proc(5)'s field N is [N - 3]. `of`: a pid, or "PID/task/TID" for one thread.
 */
export function procStatFields(of: number | string): string[] {
  const stat = readFileSync(`/proc/${of}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** The nice value (proc(5)'s field 19) of each of process `pid`'s threads, by thread name; the main thread as "main". */
export function niceByThread(pid: number): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = Number(tid) === pid ? "main" : readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      out.set(name, [...(out.get(name) ?? []), Number(procStatFields(`${pid}/task/${tid}`)[16])]);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}
