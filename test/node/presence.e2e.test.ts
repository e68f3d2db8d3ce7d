/**
 * Presence across the real stack (the deploy bundle on Miniflare, real TCP,
 * Node SDK clients; docs/protocol.md, "Presence"): a client whose TCP
 * connection dies without a close frame leaves once the runtime reports it
 * (after the grace period); an SDK subscription whose connection is cut
 * reconnects within the grace period, is never shown leaving, and its
 * metadata is sent again; a late SDK subscriber starts from the whole state.
 */
import WS from "ws";
import { describe, expect, it } from "vitest";
import { connect, type PresenceState, type Subscription } from "../../client/index";
import { mintToken } from "../../shared/token";
import { useStack } from "../support/stack";
import { waitUntil } from "../support/wait";
import { WsClient } from "../support/wsclient";

/** The SDK's sockets, so a test can cut one without a close frame. */
class CuttableSocket extends WS {
  static all: CuttableSocket[] = [];
  /** The token's subject, from the bearer entry of the subprotocols. */
  readonly sub: string;
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols);
    const bearer = [protocols ?? []]
      .flat()
      .find((p) => p.startsWith("bearer."))!
      .slice("bearer.".length);
    this.sub = (JSON.parse(Buffer.from(bearer.split(".")[1]!, "base64url").toString()) as { sub: string }).sub;
    CuttableSocket.all.push(this);
  }
}

const subs: Subscription[] = [];
const raw: WsClient[] = [];
const fx = useStack(
  "presence",
  { runtime: "miniflare", workerVars: { PRESENCE_CHANNELS: "room.*", PRESENCE_GRACE_MS: "1500", PRESENCE_BATCH_MS: "100", PRESENCE_CLAIMS: "role" } },
  () => {
    subs.forEach((s) => s.close());
    raw.forEach((c) => c.terminate());
  },
);

const tokenFor = (sub: string) => mintToken({ secret: fx.stack.secrets.JWT_SECRET, sub, channels: ["room.*"], role: "agent" });

function member(channel: string, sub: string, meta?: Record<string, unknown>): { sub: Subscription; changes: PresenceState[] } {
  const changes: PresenceState[] = [];
  const s = connect({
    url: fx.stack.workerUrl,
    channel,
    getToken: () => tokenFor(sub),
    presence: true,
    backoffBaseMs: 50,
    backoffMaxMs: 200,
    onPresence: (p) => changes.push(p),
    WebSocket: CuttableSocket as unknown as typeof globalThis.WebSocket,
  });
  if (meta) s.setPresence(meta);
  subs.push(s);
  return { sub: s, changes };
}

const subsOf = (p: { members: { sub: string }[] }) => p.members.map((m) => m.sub).sort();

describe("presence end to end", () => {
  it("a client whose TCP connection dies without a close frame leaves after the grace period", async () => {
    const ch = `room.tcp${Date.now()}`;
    const ana = member(ch, "ana", { viewing: "orders" });
    const ghost = await WsClient.connect(fx.stack.workerUrl, ch, await tokenFor("ghost"), { presence: true });
    raw.push(ghost);
    await waitUntil("ana sees both", () => same(subsOf(ana.sub.presence), ["ana", "ghost"]), 10_000);
    expect(ana.sub.presence.members.find((m) => m.sub === "ana")).toEqual({ sub: "ana", role: "agent", connections: 1, meta: { viewing: "orders" } });
    ghost.terminate(); // no close frame: the TCP connection just ends
    const cutAt = Date.now();
    await waitUntil("the ghost leaves", () => same(subsOf(ana.sub.presence), ["ana"]), 15_000);
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(1000); // after the grace period (1.5 s)
    expect(ana.sub.presence).toMatchObject({ users: 1, connections: 1 });
  });

  it("an SDK subscription cut without a close frame reconnects within the grace period: never shown leaving, metadata restored", async () => {
    const ch = `room.cut${Date.now()}`;
    const ana = member(ch, "ana");
    const bob = member(ch, "bob", { viewing: "stock" });
    await waitUntil("ana sees bob's metadata", () => ana.sub.presence.members.find((m) => m.sub === "bob")?.meta?.viewing === "stock", 10_000);
    const bobSocket = CuttableSocket.all.find((s) => s.sub === "bob" && s.readyState === WS.OPEN)!;
    const attempts = bob.sub.attempts;
    bobSocket.terminate();
    await waitUntil("bob reconnected", () => bob.sub.attempts > attempts && bob.sub.state === "open", 10_000);
    const late = member(ch, "cid");
    await waitUntil("everyone agrees", () => [ana, bob, late].every((m) => same(subsOf(m.sub.presence), ["ana", "bob", "cid"])), 10_000);
    expect(late.changes[0]!.members.length).toBeGreaterThanOrEqual(2); // the whole state first, not one join at a time
    expect(ana.sub.presence.members.find((m) => m.sub === "bob")?.meta).toEqual({ viewing: "stock" });
    // bob was listed in every state ana held since he first appeared.
    const first = ana.changes.findIndex((p) => p.members.some((m) => m.sub === "bob"));
    expect(ana.changes.slice(first).every((p) => p.members.some((m) => m.sub === "bob"))).toBe(true);
  });
});

const same = (a: string[], b: string[]) => JSON.stringify(a) === JSON.stringify([...b].sort());
