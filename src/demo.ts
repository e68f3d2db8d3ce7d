/**
 * The Worker with the demo: the product (src/index.ts) plus the dashboard's
 * state route, which reads Postgres with @neondatabase/serverless. Only
 * `npm run dev` serves it (scripts/stack.ts, with the dashboard's assets from
 * public/); `wrangler deploy` ships src/index.ts, without the demo or its
 * dependencies (docs/benchmarks.md, "Bundle size").
 */
import { createApp } from "./app";
import type { Env } from "./env";
import { demoRoutes } from "./routes/demo";

export { ChannelObject, StatsObject } from "./index";

const app = createApp([demoRoutes]);

export default {
  fetch: (request, env, ctx) => app.fetch(request, env, ctx),
} satisfies ExportedHandler<Env>;
