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
  scriptId: string;
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
  /**
   * Time between samples beyond SAMPLE_GAP_FACTOR intervals: the isolate's
   * thread was outside V8 (waiting on I/O, storage, the network), so it is not
   * charged to the function sampled last.
   */
  gapMs: number;
  groups: { group: string; ms: number; share: number }[];
  top: { fn: string; where: string; ms: number; share: number }[];
}

/**
 * Module boundaries of a bundle: esbuild starts each module with a `// path`
 * comment line, so a line number maps back to its source file.
 */
export function moduleIndex(source: string): (line: number) => string | undefined {
  const marks: [number, string][] = [];
  source.split("\n").forEach((text, i) => {
    const m = /^\/\/ ((?:node_modules\/)?[\w@./-]+\.(?:ts|js|mjs|cjs))$/.exec(text);
    if (m) marks.push([i, m[1]!]);
  });
  return (line) => {
    let lo = 0,
      hi = marks.length - 1,
      found: string | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (marks[mid]![0] <= line) {
        found = marks[mid]![1];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  };
}

/** Where a frame's code lives: our files, a dependency by package, or the runtime. */
export function groupOf(frame: CallFrame, modulePath?: string): string {
  const name = frame.functionName;
  if (name === "(idle)") return "(idle)";
  if (name === "(garbage collector)") return "(garbage collector)";
  if (name === "(program)") return "(program: runtime outside JS)";
  if (name === "(root)") return "(root)";
  const url = modulePath ?? frame.url;
  if (!url) return "(native: runtime built-ins)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const ours = /(src|durable-objects|shared|bench\/partyserver)\/([\w.-]+)/.exec(url);
  if (ours) return `${ours[1]}/${ours[2]}`;
  return url.replace(/^.*\//, "");
}

/** A sample's delta above this many sampling intervals is counted as a gap, not as the sampled function's time. */
const SAMPLE_GAP_FACTOR = 4;

/** Sums sample time per node (timeDeltas, in µs), so a sampling interval that drifted is still right. */
export function summarize(
  profile: CpuProfile,
  opts: { intervalUs: number; sources?: Map<string, string>; topN?: number } = { intervalUs: 200 },
): ProfileSummary {
  const topN = opts.topN ?? 15;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const cap = opts.intervalUs * SAMPLE_GAP_FACTOR;
  let gapUs = 0;
  for (let i = 0; i < samples.length; i++) {
    // Sample i's time is the delta to the next sample, up to the cap; the rest is a gap.
    const us = deltas[i + 1] ?? 0;
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + Math.min(us, cap));
    gapUs += Math.max(0, us - cap);
  }
  const indexes = new Map([...(opts.sources ?? [])].map(([id, src]) => [id, moduleIndex(src)]));
  const moduleOf = (f: CallFrame) => indexes.get(f.scriptId)?.(f.lineNumber);
  const groups = new Map<string, number>();
  const fns = new Map<string, { fn: string; where: string; us: number }>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const mod = moduleOf(node.callFrame);
    const g = groupOf(node.callFrame, mod);
    groups.set(g, (groups.get(g) ?? 0) + us);
    if (g === "(idle)") continue;
    busyUs += us;
    const where = mod ?? (node.callFrame.url ? `${node.callFrame.url.replace(/^.*\//, "")}:${node.callFrame.lineNumber + 1}` : g);
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
    gapMs: ms(gapUs),
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

/** A CDP session with the Worker's isolate through workerd's inspector. */
async function inspect(
  inspectorPort: number,
): Promise<{ call<T>(method: string, params?: Record<string, unknown>): Promise<T>; close(): void; target: string }> {
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
  return {
    target: target.title ?? target.webSocketDebuggerUrl,
    close: () => ws.close(),
    call: <T>(method: string, params: Record<string, unknown> = {}) =>
      new Promise<T>((resolve, reject) => {
        const id = nextId++;
        const t = setTimeout(() => reject(new Error(`inspector: ${method} timed out`)), 60_000);
        pending.set(id, (r) => {
          clearTimeout(t);
          Promise.resolve(r).then((v) => resolve(v as T), reject);
        });
        ws.send(JSON.stringify({ id, method, params }));
      }),
  };
}

/**
 * The isolate's V8 heap in use (MiB), after a full GC: the figure production's
 * 128 MB per-isolate limit applies to (workerd's RSS also holds socket buffers
 * and the runtime, which that limit does not count).
 */
export async function isolateHeapMiB(inspectorPort: number): Promise<number> {
  return (await isolateHeap(inspectorPort)).usedMiB;
}

/** The isolate's heap after a full GC: what is used, and what V8 holds for it (counted in the process's RSS). */
export async function isolateHeap(inspectorPort: number): Promise<{ usedMiB: number; totalMiB: number }> {
  const s = await inspect(inspectorPort);
  try {
    await s.call("HeapProfiler.collectGarbage").catch(() => undefined);
    const { usedSize, totalSize } = await s.call<{ usedSize: number; totalSize: number }>("Runtime.getHeapUsage");
    const mib = (n: number) => Math.round((n / 2 ** 20) * 10) / 10;
    return { usedMiB: mib(usedSize), totalMiB: mib(totalSize) };
  } finally {
    s.close();
  }
}

/** Connects to the isolate and starts sampling; `stop()` returns the summary. */
export async function startProfiler(inspectorPort: number, samplingIntervalUs = 200): Promise<{ stop(): Promise<ProfileSummary>; target: string }> {
  const { call, close, target } = await inspect(inspectorPort);
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: samplingIntervalUs });
  await call("Profiler.start");
  return {
    target,
    async stop() {
      const { profile } = await call<{ profile: CpuProfile }>("Profiler.stop");
      // The bundle's source, to map lines back to modules (the debugger is enabled only now, after sampling).
      await call("Debugger.enable");
      const sources = new Map<string, string>();
      for (const id of new Set(profile.nodes.map((n) => n.callFrame.scriptId).filter((id) => id && id !== "0")))
        sources.set(id, (await call<{ scriptSource: string }>("Debugger.getScriptSource", { scriptId: id }).catch(() => ({ scriptSource: "" }))).scriptSource);
      await call("Debugger.disable").catch(() => undefined);
      close();
      return summarize(profile, { intervalUs: samplingIntervalUs, sources });
    },
  };
}
