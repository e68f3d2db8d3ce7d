/** What a channel object lends the helpers that act for it (fanout-tree.ts, rollup.ts, refresh.ts). */
import type { Env } from "../src/channel-contract";
import type { Config } from "../shared/worker-config";
import type { EventStore } from "./event-store";
import type { Meter } from "./meter";
import type { RowsLoader } from "./rows";
import type { Sockets } from "./sockets";

export interface ChannelParts {
  env: Env;
  store: EventStore;
  sockets: Sockets;
  rows: RowsLoader;
  config: () => Config;
  /** Billable work of this object (meter.ts). */
  meter: Meter;
  /** Makes sure the object's alarm fires by `at` (one alarm serves expiry, retries and reports). */
  armAlarm: (at: number) => Promise<void>;
  /** Stats changed: report them soon. */
  noteChange: () => void;
  /** Fields that identify the object in logs. */
  where: () => Record<string, unknown>;
}
