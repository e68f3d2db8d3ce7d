import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { ConfigError, loadConfig } from "../shared/worker-config";
import type { AppEnv } from "./env";
import { ApiError } from "./errors";
import { errorBody, HTTP_ERRORS } from "../shared/http-errors";
import { errorFields, log, setLogLevel } from "../shared/log";
import { ingestRoutes } from "./routes/ingest";
import { publishRoutes } from "./routes/publish";
import { rowsRoutes } from "./routes/rows";
import { statsRoutes } from "./routes/stats";
import { wsRoutes } from "./routes/ws";

/**
 * The Worker's routes. `extra` mounts more (the demo's, from src/demo.ts, which
 * only `npm run dev` serves), so the product bundle carries none of their code.
 */
export function createApp(extra: Hono<AppEnv>[] = []) {
  const app = new Hono<AppEnv>();

  app.get("/health", (c) => c.json({ ok: true }));

  // Configuration is validated before any route that depends on it runs.
  app.use("*", async (c, next) => {
    const config = loadConfig(c.env);
    setLogLevel(config.LOG_LEVEL);
    c.set("config", config);
    await next();
  });

  app.route("/", wsRoutes);
  app.route("/", ingestRoutes);
  app.route("/", publishRoutes);
  app.route("/", statsRoutes);
  app.route("/", rowsRoutes);
  for (const routes of extra) app.route("/", routes);

  app.notFound((c) => c.json(errorBody("NOT_FOUND", `no route for ${c.req.method} ${new URL(c.req.url).pathname}`), HTTP_ERRORS.NOT_FOUND.status));

  app.onError((err, c) => {
    if (err instanceof ApiError) return c.json(errorBody(err.code, err.message, err.details), err.status);
    if (err instanceof ConfigError) {
      log("error", "configuration invalid", { variables: err.variables, detail: err.message });
      return c.json(errorBody(err.code, err.message), HTTP_ERRORS[err.code].status);
    }
    if (err instanceof HTTPException) {
      // An HTTPException that carries its own response (a Hono middleware's) is answered as it is.
      if (err.res) return err.getResponse();
      const code = err.status === 401 ? "UNAUTHORIZED" : err.status === 400 ? "BAD_REQUEST" : "HTTP_ERROR";
      return c.json(errorBody(code, err.message || "request rejected"), err.status);
    }
    log("error", "unhandled error", { path: new URL(c.req.url).pathname, ...errorFields(err) });
    return c.json(errorBody("INTERNAL", "internal error"), HTTP_ERRORS.INTERNAL.status);
  });

  return app;
}
