/** The bench's child processes (swarms, writers, baselines): forking, IPC, and cleanup on exit. */
import { fork, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
/** Every child still running, killed when the bench ends (normally or not). */
const children = new Set<ChildProcess>();

/** Forks a bench/ TypeScript file with IPC; it is killed when the bench exits. */
export function forkTs(file: string, args: string[]): ChildProcess {
  const child = fork(join(HERE, file), args, { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}

/** Kills every child still running. */
export function killChildren(): void {
  for (const c of children) c.kill("SIGKILL");
}

/** Runs a bench's main: exit 0, or kill the children, log the error as a JSON line and exit 1. */
export function runBench(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      killChildren();
      process.stderr.write(JSON.stringify({ level: "error", msg: (err as Error).message }) + "\n");
      process.exit(1);
    },
  );
}

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
