/** Process figures from the operating system for the benches (Linux ps and /proc). */
import { execFileSync } from "node:child_process";

/** The pids of a process group whose command matches (workerd under wrangler dev or Miniflare). */
export function groupPids(pgid: number | undefined, match: RegExp): number[] {
  if (!pgid) return [];
  try {
    return execFileSync("ps", ["-o", "pid=,comm=", "-g", String(pgid)], { encoding: "utf8" })
      .split("\n")
      .filter((l) => match.test(l))
      .map((l) => Number(l.trim().split(/\s+/)[0]));
  } catch {
    return [];
  }
}

/** Resident memory of a process, MiB (NaN when it is gone). */
export const pidRss = (pid: number | undefined) => {
  try {
    return Number(execFileSync("ps", ["-o", "rss=", "-p", String(pid)], { encoding: "utf8" }).trim()) / 1024;
  } catch {
    return NaN;
  }
};
