/**
 * End to end, every real part: embedded Postgres -> triggers (logical
 * messages or the outbox: both capture modes) -> relay (child process) ->
 * Worker under wrangler dev -> channel Durable Object -> WebSocket clients.
 */
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { syncState, type Envelope, type PgSnapshot, type SyncedState } from "../../client/index";
import { devToken } from "../../scripts/stack";
import { useStack } from "../support/stack";
import { expectContiguous, waitUntil } from "../support/wait";
import { WsClient } from "../support/wsclient";

describe.each(["wal", "outbox"] as const)("%s capture", (mode) => {
  const clients: WsClient[] = [];
  const fx = useStack("e2e", { relayEnv: { RELAY_BACKOFF_MAX_MS: "500", RELAY_CAPTURE: mode } }, () => clients.forEach((c) => c.terminate()));
  let token: string;
  beforeAll(async () => {
    token = await devToken(fx.stack.secrets);
  });

  async function subscribe(channel: string, opts: { since?: number; token?: string } = {}): Promise<WsClient> {
    const c = await WsClient.connect(fx.stack.workerUrl, channel, opts.token ?? token, opts);
    clients.push(c);
    return c;
  }

  /** Inserts a sale; its id as Postgres prints it (int8 arrives as exact text: docs/protocol.md, "Values"). */
  async function sale(quantity = 1, email = "buyer@example.com"): Promise<string> {
    const r = await fx.db.query<{ id: string }>(
      "INSERT INTO ventas (sku, quantity, total, customer_email) VALUES ('KB-01', $1::int, 89.00 * $1::int, $2) RETURNING id",
      [quantity, email],
    );
    return r.rows[0]!.id;
  }

  /** Inserts `n` sales one transaction each, recording their ids as they commit (so tests can act mid-stream). */
  function writeSales(n: number, ids: string[]): Promise<void> {
    return (async () => {
      for (let i = 0; i < n; i++) ids.push(await sale());
    })();
  }

  describe("end to end", () => {
    it("an INSERT reaches every subscriber of its channel and no one else", async () => {
      const sales = await Promise.all([subscribe("sales"), subscribe("sales"), subscribe("sales")]);
      const inventory = await subscribe("inventory");
      const id = await sale(2);
      for (const c of sales) {
        const [e] = await c.waitFor("the sale", () => (c.events.length >= 1 ? c.events : undefined));
        expect(e).toMatchObject({ channel: "sales", op: "insert", table: "public.ventas", data: { id, quantity: 2 } });
      }
      expect(new Set(sales.map((c) => c.events[0]!.seq)).size).toBe(1);
      await fx.db.query("UPDATE inventory SET stock = stock + 1 WHERE sku = 'MS-02'");
      await inventory.waitFor("the stock change", () => inventory.events.length >= 1);
      expect(inventory.events.every((e) => e.channel === "inventory")).toBe(true);
      expect(sales.every((c) => c.events.every((e) => e.channel === "sales"))).toBe(true);
    });

    it("refuses a client whose token does not allow the channel", async () => {
      const narrow = await devToken(fx.stack.secrets, { channels: ["inventory.*"] });
      await expect(subscribe("sales", { token: narrow })).rejects.toMatchObject({ status: 403 });
      await expect(subscribe("sales", { token: "forged.token.value" })).rejects.toMatchObject({ status: 401 });
    });

    it("never sends an unpublished column to a client", async () => {
      const c = await subscribe("sales");
      const id = await sale(1, "private-person@example.com");
      await c.waitFor("the sale", () => c.events.some((e) => e.data?.id === id));
      expect(c.raw.join("\n")).not.toContain("private-person");
      expect(c.raw.join("\n")).not.toContain("customer_email");
      const inv = await subscribe("inventory");
      await fx.db.query("UPDATE inventory SET stock = stock + 1, supplier_cost = 999.99 WHERE sku = 'HD-04'");
      await inv.waitFor("the stock change", () => inv.events.length >= 1);
      expect(inv.raw.join("\n")).not.toContain("supplier_cost");
    });

    it("loses nothing when the relay is SIGKILLed mid-stream and restarted", async () => {
      const c = await subscribe("sales");
      const ids: string[] = [];
      const writer = writeSales(120, ids);
      await c.waitFor("some events before the kill", () => c.events.length >= 20);
      fx.stack.relay!.kill("SIGKILL");
      await fx.stack.relay!.exited;
      await writer;
      await fx.stack.startRelay();
      const evs = await c.waitFor(
        "all 120 sales",
        () => (c.events.filter((e) => ids.includes(e.data!.id as string)).length >= 120 ? c.events : undefined),
        30_000,
      );
      const mine = evs.filter((e) => ids.includes(e.data!.id as string));
      expect(mine.map((e) => e.data!.id)).toEqual(ids);
      expectContiguous(evs.map((e) => e.seq));
    });

    it("a client that disconnects while events flow resumes from its last seq with no gap or duplicate", async () => {
      const first = await subscribe("sales");
      const ids: string[] = [];
      // Phase 1 is still being written when the client is cut; phase 2 is written only after the cut,
      // so the resumed client always has events to receive.
      const phase1 = writeSales(30, ids);
      await first.waitFor("some events", () => first.events.length >= 10);
      first.terminate();
      // What the client had processed when it was cut: `ws` may still emit frames it had already read
      // from the socket after terminate(), and those were never processed by this client.
      const resumeFrom = first.lastSeq;
      const processed = first.events.slice();
      const seenBefore = processed.map((e) => e.data!.id as string);
      await phase1;
      const phase2 = writeSales(30, ids);
      const again = await subscribe("sales", { since: resumeFrom });
      await phase2;
      await again.waitFor("the rest of the 60", () => {
        const have = new Set([...seenBefore, ...again.events.map((e) => e.data!.id as string)]);
        return ids.every((id) => have.has(id));
      });
      expect(again.events[0]!.seq).toBe(resumeFrom + 1);
      expectContiguous([...processed, ...again.events].map((e) => e.seq));
      const delivered = [...seenBefore, ...again.events.map((e) => e.data!.id as string)].filter((id) => ids.includes(id));
      expect(delivered).toEqual(ids);
    });

    it("moves an event over MAX_EVENT_BYTES to dead_letter (refused by the Worker by id) and keeps delivering", async () => {
      const c = await subscribe("sales");
      // 600,000 × "é": 1.2 MB in UTF-8, over the Worker's 1,000,000-byte MAX_EVENT_BYTES; handed to the relay as a trigger would.
      const huge = await fx.db.query<{ event_id: string }>(
        mode === "outbox"
          ? "INSERT INTO notifiws.outbox (channel, op, table_name, data) VALUES ('sales', 'insert', 'public.ventas', jsonb_build_object('note', repeat('é', 600000))) RETURNING event_id"
          : `WITH m AS (SELECT notifiws.wal_message('sales', 'insert', 'public.ventas', jsonb_build_object('note', repeat('é', 600000)), NULL, NULL) AS t)
             SELECT (split_part(t, E'\\n', 1)::jsonb)->>'id' AS event_id, pg_logical_emit_message(true, notifiws.message_prefix(), t) FROM m`,
      );
      const id = await sale();
      await c.waitFor("the sale after the huge event", () => c.events.some((e) => e.data!.id === id), 30_000);
      expect(c.events.some((e) => e.id === huge.rows[0]!.event_id)).toBe(false);
      const dead = await waitUntil("the dead letter", async () => {
        const r = await fx.db.query<{ event_id: string; reason: string }>("SELECT event_id, reason FROM notifiws.dead_letter");
        return r.rowCount === 1 ? r.rows : undefined;
      });
      expect(dead).toEqual([{ event_id: huge.rows[0]!.event_id, reason: expect.stringContaining("EVENT_TOO_LARGE") }]);
    });

    it("delivers the relay's backlog after the Worker comes back from a restart", async () => {
      const before = await subscribe("sales");
      await sale();
      await before.waitFor("a sale", () => before.events.length >= 1);
      const resumeFrom = before.lastSeq;
      await fx.stack.worker!.stop();
      const ids: string[] = [];
      await writeSales(25, ids);
      // The relay tried the Worker and holds the backlog: in the outbox, or read from the slot and unconfirmed.
      await waitUntil("the relay to hold a backlog", async () => {
        const metrics = await (await fetch(`${fx.stack.relayUrl}/metrics`)).text();
        if (mode === "wal")
          return Number(/notifiws_relay_wal_buffered_bytes (\d+)/.exec(metrics)?.[1] ?? 0) > 0 && /notifiws_relay_post_failures_total [1-9]/.test(metrics);
        return Number((await fx.db.query<{ n: string }>("SELECT count(*) AS n FROM notifiws.outbox")).rows[0]!.n) >= 25;
      });
      await fx.stack.startWorker();
      const after = await subscribe("sales", { since: resumeFrom });
      await after.waitFor("the 25 backlog sales", () => ids.every((id) => after.events.some((e) => e.data!.id === id)), 30_000);
      expect(after.events.filter((e) => ids.includes(e.data!.id as string)).map((e) => e.data!.id)).toEqual(ids);
      expectContiguous(after.events.map((e) => e.seq));
      expect(after.events[0]!.seq).toBe(resumeFrom + 1);
    });

    it("snapshot, then live: state loaded during concurrent out-of-order commits plus applied events equals the database, every time", async () => {
      const connect = async () => {
        const c = new pg.Client({ connectionString: fx.stack.databaseUrl });
        await c.connect();
        return c;
      };
      const writers = await Promise.all([0, 1, 2, 3].map(connect));
      const long = await connect();
      const reader = await connect();
      type Totals = { sales: number; units: number };
      const totals = async (c: pg.Client) =>
        (await c.query<Totals>("SELECT count(*)::int AS sales, coalesce(sum(quantity), 0)::int AS units FROM ventas")).rows[0]!;
      // The app's own read: its queries and notifiws.snapshot() in one REPEATABLE READ transaction.
      let readerBusy = Promise.resolve();
      const load = () => {
        const run = readerBusy.then(async () => {
          await reader.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
          try {
            const state = await totals(reader);
            const snapshot = (await reader.query<{ s: PgSnapshot }>("SELECT notifiws.snapshot() AS s")).rows[0]!.s;
            return { state, snapshot };
          } finally {
            await reader.query("COMMIT");
          }
        });
        readerBusy = run.then(
          () => undefined,
          () => undefined,
        );
        return run;
      };
      const synced: { s: SyncedState<Totals>; skipped: number; seen: Set<string> }[] = [];
      const follow = () => {
        const entry = { s: undefined as unknown as SyncedState<Totals>, skipped: 0, seen: new Set<string>() };
        entry.s = syncState<Totals>({
          url: fx.stack.workerUrl,
          token,
          channels: ["sales"],
          load,
          apply: (st, e: Envelope) => (e.op === "insert" ? { sales: st.sales + 1, units: st.units + Number(e.data!.quantity) } : st),
          onEvent: (e, applied) => {
            entry.seen.add(e.data!.id as string);
            if (!applied) entry.skipped++;
          },
        });
        synced.push(entry);
        return entry.s.ready;
      };
      try {
        // A transaction that stays open across several snapshots: in progress for them, committed later.
        await long.query("BEGIN");
        await long.query("INSERT INTO ventas (sku, quantity, total) VALUES ('KB-01', 7, 623.00)");
        const loaded: Promise<Totals>[] = [];
        for (let round = 0; round < 24; round++) {
          // Every writer inserts in its own transaction (taking ids in writer order), then they commit in reverse.
          for (const [w, c] of writers.entries()) {
            await c.query("BEGIN");
            await c.query("INSERT INTO ventas (sku, quantity, total) VALUES ('MS-02', $1::int, 10.00 * $1::int)", [w + 1]);
          }
          if (round % 3 === 0) loaded.push(follow()); // a fresh app instance loads while transactions are open
          for (const c of [...writers].reverse()) await c.query("COMMIT");
          if (round === 10) await long.query("COMMIT");
        }
        await Promise.all(loaded);
        const last = (await fx.db.query<{ id: string }>("INSERT INTO ventas (sku, quantity, total) VALUES ('KB-01', 1, 89.00) RETURNING id")).rows[0]!.id;
        for (const [i, e] of synced.entries()) await waitUntil(`instance ${i} to see the last sale`, () => e.seen.has(last), 30_000);
        const db = await totals(writers[0]!);
        for (const [i, e] of synced.entries()) expect(e.s.state, `instance ${i} (loaded once)`).toEqual(db);
        expect(synced.every((e) => e.s.loads === 1)).toBe(true);
        // The handoff was exercised: some events were already in a loaded state and were skipped.
        expect(synced.reduce((n, e) => n + e.skipped, 0)).toBeGreaterThan(0);
      } finally {
        synced.forEach((e) => e.s.close());
        await Promise.all([...writers, long, reader].map((c) => c.end()));
      }
    });
  });
});
