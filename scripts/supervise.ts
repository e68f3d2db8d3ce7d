/**
 * Keeps one child of the local stack running: when it dies unexpectedly, say
 * so (with the tail of its output) and start it again after a full-jitter
 * backoff, instead of taking the whole stack down. A child that stayed up a
 * while is considered healthy again and the backoff starts over.
 */
import { fullJitter } from "../shared/backoff";
import { log } from "../shared/log";
import type { Proc } from "./stack";

export interface SuperviseOptions {
  baseMs?: number;
  capMs?: number;
  /** Up this long counts as healthy: the next crash restarts after a short delay again. */
  stableMs?: number;
}

export function supervise(name: string, current: () => Proc | undefined, restart: () => Promise<void>, opts: SuperviseOptions = {}): { stop(): void } {
  const base = opts.baseMs ?? 500;
  const cap = opts.capMs ?? 30_000;
  const stableMs = opts.stableMs ?? 60_000;
  let stopped = false;
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;

  const watch = (proc: Proc, startedAt: number) => {
    void proc.exited.then((code) => {
      if (stopped) return;
      proc.reap(); // a dead wrangler can leave workerd holding the port
      attempt = Date.now() - startedAt > stableMs ? 1 : attempt + 1;
      const delay = Math.max(base / 2, fullJitter(attempt, base, cap));
      log("error", `${name} exited; restarting`, { code, restartInMs: delay, attempt, output: proc.output.slice(-1500) });
      timer = setTimeout(() => void again(), delay);
    });
  };
  const again = async () => {
    if (stopped) return;
    try {
      await restart();
      const proc = current();
      if (!proc) throw new Error(`${name} did not start`);
      log("info", `${name} restarted`, { attempt });
      watch(proc, Date.now());
    } catch (err) {
      attempt++;
      const delay = fullJitter(attempt, base, cap);
      log("error", `${name} failed to restart; trying again`, { restartInMs: delay, attempt, error: (err as Error).message.slice(0, 500) });
      if (!stopped) timer = setTimeout(() => void again(), delay);
    }
  };
  const first = current();
  if (first) watch(first, Date.now());
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
