import type { ChannelObject } from "../durable-objects/channel";
import type { ControlObject } from "../durable-objects/control";

/** Bindings declared in wrangler.toml plus the string variables validated by src/config.ts. */
export interface Env {
  CHANNEL: DurableObjectNamespace<ChannelObject>;
  CONTROL: DurableObjectNamespace<ControlObject>;
  ASSETS?: Fetcher;
  [variable: string]: unknown;
}
