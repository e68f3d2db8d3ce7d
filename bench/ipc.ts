/** IPC with the bench's child processes (swarms, writers, baselines). */
import type { ChildProcess } from "node:child_process";

/** The next message from `child` that `match`es; rejects on timeout or when the child exits first. */
export function nextMessage<T>(child: ChildProcess, what: string, timeoutMs: number, match: (m: unknown) => boolean = () => true): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.off("message", on);
      reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what}`));
    }, timeoutMs);
    const onExit = (code: number | null) => {
      clearTimeout(t);
      child.off("message", on);
      reject(new Error(`${what}: process exited with ${code}`));
    };
    const on = (m: unknown) => {
      if (!match(m)) return;
      clearTimeout(t);
      child.off("message", on);
      child.off("exit", onExit);
      resolve(m as T);
    };
    child.on("message", on);
    child.once("exit", onExit);
  });
}
