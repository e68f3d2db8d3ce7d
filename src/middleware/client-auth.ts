/** Verifies the client's token (subprotocol, Authorization or ?token=) and puts its claims on the context. */
import { createMiddleware } from "hono/factory";
import { authenticate } from "../request";
import type { AppEnv } from "../env";

export const clientAuth = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    c.set("claims", await authenticate(c.req.raw, c.var.config));
    await next();
  });
