import { createApp } from "./app";
import type { Env } from "./env";

export { ChannelObject } from "../durable-objects/channel";
export { StatsObject } from "../durable-objects/stats-store";

const app = createApp();

export default {
  fetch: (request, env, ctx) => app.fetch(request, env, ctx),
} satisfies ExportedHandler<Env>;
