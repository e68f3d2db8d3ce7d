/** Validates the `:channel` route parameter (400 BAD_CHANNEL) and puts it on the context. */
import { createMiddleware } from "hono/factory";
import { ApiError } from "../errors";
import type { AppEnv } from "../env";
import { ChannelName } from "../../shared/protocol";

export const channelParam = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const parsed = ChannelName.safeParse(c.req.param("channel"));
    if (!parsed.success) throw new ApiError("BAD_CHANNEL", "channel names are 1-128 of letters, digits and _ . : -");
    c.set("channel", parsed.data);
    await next();
  });
