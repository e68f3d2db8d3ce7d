/**
 * The SDK's plan for a token's lifetime on one connection (client/lifetime.ts):
 * a refresh before expiry when a token source exists, and an end of the
 * connection 1 s after expiry unless a `refreshed` moved it, so a client never
 * waits for a TCP connection the runtime keeps open after its 4001 close
 * (docs/protocol.md, "Close codes").
 */
import { describe, expect, it } from "vitest";
import { planLifetime, type LifetimeHooks } from "../../client/lifetime";
import { mintToken } from "../../shared/token";

const NOW = Math.floor(Date.now() / 1000) * 1000;

function harness(o: { nextToken?: () => Promise<string>; current?: () => boolean } = {}) {
  const timers: { at: number; fn: () => void }[] = [];
  const sent: string[] = [];
  let expired = 0;
  const hooks: LifetimeHooks = {
    later: (ms, fn) => void timers.push({ at: NOW + ms, fn }),
    current: o.current ?? (() => true),
    nextToken: o.nextToken,
    send: (f) => void sent.push(f),
    expire: () => void expired++,
    report: () => undefined,
    refreshBeforeSeconds: 60,
  };
  return { hooks, timers, sent, expired: () => expired };
}

describe("planLifetime", () => {
  it("ends the connection 1 s after expiry", () => {
    const h = harness();
    planLifetime(NOW / 1000 + 300, h.hooks, NOW);
    expect(h.timers.map((t) => t.at - NOW)).toEqual([301_000]);
    h.timers[0]!.fn();
    expect(h.expired()).toBe(1);
  });

  it("does not end it when the expiry moved (a refreshed) or the connection is gone", () => {
    const h = harness({ current: () => false });
    planLifetime(NOW / 1000 + 300, h.hooks, NOW);
    h.timers[0]!.fn();
    expect(h.expired()).toBe(0);
  });

  it("plans no end for a token the server accepted but our clock calls expired (its own 4001 will come)", () => {
    const h = harness();
    planLifetime(NOW / 1000 - 5, h.hooks, NOW);
    expect(h.timers).toEqual([]);
  });

  it("with a token source: refreshes 60 s before expiry with a newer token, never with one that is not newer", async () => {
    const exp = NOW / 1000 + 300;
    const newer = await mintToken({ secret: "s".repeat(32), sub: "a", channels: [], ttlSeconds: 10_000 });
    const h = harness({ nextToken: async () => newer });
    planLifetime(exp, h.hooks, NOW);
    const refresh = h.timers.find((t) => t.at - NOW === 240_000)!;
    refresh.fn();
    await new Promise((r) => setTimeout(r, 0));
    expect(h.sent).toEqual([JSON.stringify({ type: "refresh", token: newer })]);
    const older = await mintToken({ secret: "s".repeat(32), sub: "a", channels: [], ttlSeconds: -10 });
    const h2 = harness({ nextToken: async () => older });
    planLifetime(exp, h2.hooks, NOW);
    h2.timers.find((t) => t.at - NOW === 240_000)!.fn();
    await new Promise((r) => setTimeout(r, 0));
    expect(h2.sent).toEqual([]);
  });
});
