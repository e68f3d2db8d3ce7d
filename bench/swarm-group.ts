/** A load-generating swarm of any size, as several bench/swarm.ts processes driven as one. */
import type { ChildProcess } from "node:child_process";
import { Histogram } from "./histogram";
import { forkTs, nextMessage } from "./ipc";
import type { SwarmArgs, SwarmCommand, SwarmReport } from "./swarm";

/** Sockets per load-generator process: each holds one fd per socket, well under the 20,000 per-process limit. */
export const SWARM_PER_PROCESS = 2500;

/** One logical swarm of `count` sockets, split over processes of at most SWARM_PER_PROCESS sockets. */
export class Swarm {
  private constructor(
    readonly procs: ChildProcess[],
    readonly ready: { connected: number; failed: number },
  ) {}
  static async start(args: SwarmArgs): Promise<Swarm> {
    const parts = Math.ceil(args.count / SWARM_PER_PROCESS);
    const procs = Array.from({ length: parts }, (_, i) => {
      const count = Math.floor(args.count / parts) + (i < args.count % parts ? 1 : 0);
      return forkTs("swarm.ts", [JSON.stringify({ ...args, count, concurrency: Math.ceil(args.concurrency / parts) })]);
    });
    try {
      const readies = await Promise.all(
        procs.map((p) =>
          nextMessage<{ connected: number; failed: number }>(
            p,
            `${args.count} ${args.flavour} connections`,
            300_000,
            (m) => !!(m as { ready?: boolean }).ready,
          ),
        ),
      );
      return new Swarm(procs, { connected: readies.reduce((s, r) => s + r.connected, 0), failed: readies.reduce((s, r) => s + r.failed, 0) });
    } catch (err) {
      for (const p of procs) p.kill("SIGKILL");
      throw err;
    }
  }
  async ask(cmd: SwarmCommand): Promise<unknown[]> {
    return Promise.all(
      this.procs.map((p) => {
        const reply = nextMessage<unknown>(p, cmd.cmd, 30_000);
        p.send(cmd);
        return reply;
      }),
    );
  }
  /** Every process's report, merged (the latency histogram exactly, bucket by bucket). */
  async report(): Promise<SwarmReport> {
    const reps = (await this.ask({ cmd: "report" })) as SwarmReport[];
    const hist = new Histogram();
    for (const r of reps) hist.merge(r.histogram);
    const started = reps.filter((r) => r.firstAt > 0);
    return {
      connected: reps.reduce((s, r) => s + r.connected, 0),
      failed: reps.reduce((s, r) => s + r.failed, 0),
      connectMs: reps.flatMap((r) => r.connectMs),
      openMs: reps.flatMap((r) => r.openMs),
      warmConnectMs: reps.flatMap((r) => r.warmConnectMs),
      deliveries: reps.reduce((s, r) => s + r.deliveries, 0),
      duplicates: reps.reduce((s, r) => s + r.duplicates, 0),
      missing: reps.reduce((s, r) => s + r.missing, 0),
      firstAt: started.length ? Math.min(...started.map((r) => r.firstAt)) : 0,
      lastAt: Math.max(0, ...reps.map((r) => r.lastAt)),
      latency: hist.percentiles([0.5, 0.95, 0.99]),
      histogram: [],
    };
  }
  async stop() {
    await Promise.all(
      this.procs.map((p) => {
        const exited = new Promise((r) => p.once("exit", r));
        p.send({ cmd: "exit" });
        return exited;
      }),
    );
  }
}
