/** GET /stats (JSON) and GET /metrics (Prometheus text), behind the admin token. */
import { Hono, type Context } from "hono";
import type { AppEnv } from "../env";
import type { ChannelStats } from "../channel-contract";
import { ApiError } from "../errors";
import { bearerKey } from "../middleware/bearer-key";

export const statsRoutes = new Hono<AppEnv>();

const adminOnly = bearerKey({
  what: "admin token",
  missingCode: "UNAUTHORIZED",
  invalidCode: "UNAUTHORIZED",
  keys: (c) => {
    const token = c.var.config.ADMIN_TOKEN;
    if (!token) throw new ApiError(503, "ADMIN_DISABLED", "set ADMIN_TOKEN to enable /stats and /metrics");
    return [token];
  },
});

export interface StatsReport {
  channels: ChannelStats[];
  totals: Omit<ChannelStats, "channel" | "headSeq" | "historySize" | "lastEventAt"> & { channels: number; lastEventAt: number | null };
}

async function collect(c: Context<AppEnv>): Promise<StatsReport> {
  const control = c.env.CONTROL.get(c.env.CONTROL.idFromName("control"));
  const names = await control.listChannels();
  const channels = await Promise.all(names.map((n) => c.env.CHANNEL.get(c.env.CHANNEL.idFromName(n)).stats()));
  const totals = { channels: channels.length, connections: 0, events: 0, duplicates: 0, messagesSent: 0, sendErrors: 0, lastEventAt: null as number | null };
  for (const s of channels) {
    totals.connections += s.connections;
    totals.events += s.events;
    totals.duplicates += s.duplicates;
    totals.messagesSent += s.messagesSent;
    totals.sendErrors += s.sendErrors;
    if (s.lastEventAt !== null && (totals.lastEventAt === null || s.lastEventAt > totals.lastEventAt)) totals.lastEventAt = s.lastEventAt;
  }
  return { channels, totals };
}

statsRoutes.get("/stats", adminOnly, async (c) => c.json(await collect(c)));

const esc = (s: string) => s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

/** Renders the stats in Prometheus text exposition format 0.0.4. */
export function renderMetrics(report: StatsReport): string {
  const metrics: [name: string, type: "gauge" | "counter", help: string, pick: (s: ChannelStats) => number][] = [
    ["notifiws_connections", "gauge", "Open WebSocket connections", (s) => s.connections],
    ["notifiws_events_total", "counter", "Events accepted (after dedupe)", (s) => s.events],
    ["notifiws_duplicates_total", "counter", "Events dropped as duplicates", (s) => s.duplicates],
    ["notifiws_messages_sent_total", "counter", "WebSocket frames sent", (s) => s.messagesSent],
    ["notifiws_send_errors_total", "counter", "Failed sends (socket closed with 1011)", (s) => s.sendErrors],
    ["notifiws_head_seq", "gauge", "Highest seq assigned", (s) => s.headSeq],
    ["notifiws_history_events", "gauge", "Events retained for resume", (s) => s.historySize],
    ["notifiws_last_event_timestamp_seconds", "gauge", "Time of the last event", (s) => (s.lastEventAt ?? 0) / 1000],
  ];
  const lines: string[] = [];
  for (const [name, type, help, pick] of metrics) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const s of report.channels) lines.push(`${name}{channel="${esc(s.channel)}"} ${pick(s)}`);
  }
  lines.push("# HELP notifiws_channels Channels known to the registry", "# TYPE notifiws_channels gauge", `notifiws_channels ${report.totals.channels}`);
  return lines.join("\n") + "\n";
}

statsRoutes.get("/metrics", adminOnly, async (c) =>
  c.text(renderMetrics(await collect(c)), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }),
);
