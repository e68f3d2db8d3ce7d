/** Starts the bench's PartyServer peer (bench/partyserver) beside a stack, on either runtime. */
import { join } from "node:path";
import { freePort } from "../scripts/embedded-pg";
import { startWorkerProcess, ROOT, type Proc, type Stack } from "../scripts/stack";

export async function startPartyServerPeer(
  stack: Stack,
  runtime: "wrangler-dev" | "miniflare",
  stateDir: string,
): Promise<{ proc: Proc; url: string; inspectorPort: number }> {
  const url = `http://127.0.0.1:${await freePort()}`;
  const inspectorPort = await freePort();
  const proc = await startWorkerProcess({
    runtime,
    url,
    // The relay signs with the stack's secret; the peer checks it like notifiws does.
    env: { INGEST_SECRETS: stack.secrets.INGEST_SECRET },
    envFile: join(stateDir, "peer.env"),
    persistDir: join(stateDir, `peer-${runtime}`),
    config: join(ROOT, "bench/partyserver/wrangler.toml"),
    inspectorPort,
  });
  return { proc, url, inspectorPort };
}
