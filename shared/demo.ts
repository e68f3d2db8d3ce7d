/** The demo dashboard's initial state: the contract between GET /api/demo/state and client/dashboard. */
import type { PgSnapshot } from "./snapshot";

export interface DemoState {
  salesToday: number;
  revenueToday: number;
  perMinute: { minute: string; revenue: number; sales: number }[];
  /**
   * The Postgres snapshot every number above was read under (one REPEATABLE
   * READ transaction): the SDK's syncState applies exactly the live events
   * whose transaction it did not see.
   */
  snapshot: PgSnapshot;
}
