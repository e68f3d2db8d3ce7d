/**
 * A V8 CPU profile of the Worker (and its Durable Objects: one isolate) over
 * the Chrome DevTools Protocol that workerd's inspector speaks. Used by
 * `npm run bench:profile` to say where the time of the worst ratio goes.
 *
 * Self time is summed per function and grouped by where the code lives
 * (our directories, each dependency, the runtime's natives, GC, idle), so the
 * numbers answer "how much of the isolate's time is ours".
 */
import WebSocket from "ws";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  wallMs: number;
  /** Sampled time that was not idle. */
  busyMs: number;
  groups: { group: string; ms: number; share: number }[];
  top: { fn: string; where: string; ms: number; share: number }[];
}

/** Where a frame's code lives: our directories, a dependency by package, or the runtime. */
export function groupOf(frame: CallFrame): string {
  const name = frame.functionName;
  if (name === "(idle)") return "(idle)";
  if (name === "(garbage collector)") return "(garbage collector)";
  if (name === "(program)") return "(program: runtime outside JS)";
  if (name === "(root)") return "(root)";
  const url = frame.url;
  if (!url) return "(native: runtime built-ins)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const ours = /(src|durable-objects|shared|bench\/partyserver)\//.exec(url);
  if (ours) return `${ours[1]}/`;
  return url.replace(/^.*\//, "");
}

/** Sums sample time per node (timeDeltas, in µs), so a sampling interval that drifted is still right. */
export function summarize(profile: CpuProfile, topN = 15): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    // A delta is the time before sample i; it is charged to the sample that follows it.
    const us = deltas[i + 1] ?? 0;
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + us);
  }
  const groups = new Map<string, number>();
  const fns = new Map<string, { fn: string; where: string; us: number }>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const g = groupOf(node.callFrame);
    groups.set(g, (groups.get(g) ?? 0) + us);
    if (g === "(idle)") continue;
    busyUs += us;
    const where = node.callFrame.url
      ? `${node.callFrame.url.replace(/^.*?(node_modules\/|src\/|durable-objects\/|shared\/)/, "$1")}:${node.callFrame.lineNumber + 1}`
      : g;
    const key = `${node.callFrame.functionName}@${where}`;
    const f = fns.get(key) ?? { fn: node.callFrame.functionName || "(anonymous)", where, us: 0 };
    f.us += us;
    fns.set(key, f);
  }
  const ms = (us: number) => Math.round(us / 100) / 10;
  const share = (us: number) => Math.round((us / Math.max(1, busyUs)) * 1000) / 10;
  return {
    wallMs: ms(profile.endTime - profile.startTime),
    busyMs: ms(busyUs),
    groups: [...groups]
      .filter(([g]) => g !== "(idle)")
      .sort((a, b) => b[1] - a[1])
      .map(([group, us]) => ({ group, ms: ms(us), share: share(us) })),
    top: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((f) => ({ fn: f.fn, where: f.where, ms: ms(f.us), share: share(f.us) })),
  };
}

/** Connects to the first inspector target and starts sampling; `stop()` returns the profile. */
export async function startProfiler(inspectorPort: number, samplingIntervalUs = 200): Promise<{ stop(): Promise<CpuProfile>; target: string }> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json()) as { title?: string; webSocketDebuggerUrl: string }[];
  const target = targets.find((t) => /notifiws|partyserver/.test(t.title ?? "")) ?? targets[0];
  if (!target) throw new Error(`no inspector target on port ${inspectorPort}`);
  const ws = new WebSocket(target.webSocketDebuggerUrl, { perMessageDeflate: false, maxPayload: 1 << 30 });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  let nextId = 1;
  const pending = new Map<number, (result: unknown) => void>();
  ws.on("message", (data) => {
    const msg = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: { message: string } };
    if (msg.id && pending.has(msg.id)) {
      pending.get(msg.id)!(msg.error ? Promise.reject(new Error(msg.error.message)) : msg.result);
      pending.delete(msg.id);
    }
  });
  const call = <T>(method: string, params: Record<string, unknown> = {}) =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      const t = setTimeout(() => reject(new Error(`inspector: ${method} timed out`)), 60_000);
      pending.set(id, (r) => {
        clearTimeout(t);
        Promise.resolve(r).then((v) => resolve(v as T), reject);
      });
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: samplingIntervalUs });
  await call("Profiler.start");
  return {
    target: target.title ?? target.webSocketDebuggerUrl,
    async stop() {
      const { profile } = await call<{ profile: CpuProfile }>("Profiler.stop");
      ws.close();
      return profile;
    },
  };
}
