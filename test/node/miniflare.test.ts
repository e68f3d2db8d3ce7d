/**
 * The deploy bundle (`wrangler deploy --dry-run`) served by Miniflare directly,
 * with no `wrangler dev` proxy: the runtime `npm run bench` reports next to
 * wrangler dev. A committed row reaches subscribers in order, a resume from a
 * `seq` fills the gap, and a bad token is refused, on the same bindings
 * wrangler.toml declares.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { devToken } from "../../scripts/stack";
import { mintToken } from "../../shared/token";
import { useStack } from "../support/stack";
import { expectContiguous } from "../support/wait";
import { WsClient } from "../support/wsclient";

const clients: WsClient[] = [];
const fx = useStack("miniflare", { runtime: "miniflare" }, () => clients.forEach((c) => c.terminate()));
let token: string;
beforeAll(async () => {
  token = await devToken(fx.stack.secrets);
});

const sale = async () =>
  (await fx.db.query<{ id: string }>("INSERT INTO ventas (sku, quantity, total, customer_email) VALUES ('KB-01', 1, 89.00, 'a@example.com') RETURNING id"))
    .rows[0]!.id;

describe("Miniflare-direct runtime (the deploy bundle, no dev proxy)", () => {
  it("delivers committed rows in order and resumes from a seq", async () => {
    const a = await WsClient.connect(fx.stack.workerUrl, "sales", token);
    clients.push(a);
    const ids = [await sale(), await sale(), await sale()];
    await a.waitFor("three sales", () => a.events.length >= 3);
    expect(a.events.map((e) => (e.data as { id: string }).id)).toEqual(ids);
    expectContiguous(a.events.map((e) => e.seq));

    const resumed = await WsClient.connect(fx.stack.workerUrl, "sales", token, { since: a.events[0]!.seq });
    clients.push(resumed);
    await resumed.waitFor("the two later sales", () => resumed.events.length >= 2);
    expect(resumed.events.map((e) => e.seq)).toEqual(a.events.slice(1).map((e) => e.seq));
  });

  it("refuses a token signed with another secret", async () => {
    const forged = await mintToken({ secret: "not-the-secret-not-the-secret-000", sub: "x", channels: ["sales"] });
    await expect(WsClient.connect(fx.stack.workerUrl, "sales", forged)).rejects.toMatchObject({ status: 401 });
  });
});
