/** Hono's environment for the Worker's routes; the bindings (`Env`) are part of src/channel-contract.ts. */
import type { Claims } from "../shared/auth";
import type { Config } from "../shared/worker-config";
import type { Env } from "./channel-contract";

export type { Env };

/** Hono's environment: bindings plus what middleware puts on the context. */
export type AppEnv = {
  Bindings: Env;
  Variables: {
    /** Validated configuration (every route). */
    config: Config;
    /** The verified client token (routes behind clientAuth()). */
    claims: Claims;
    /** The validated :channel parameter (routes behind channelParam()). */
    channel: string;
    /** Which configured key matched (routes behind bearerKey()). */
    keyIndex: number;
  };
};
