/**
 * The dashboard in headless Chromium (Debian's chromium, driven by
 * playwright-core) against the whole local stack.
 */
import { mkdir } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { build } from "esbuild";
import { freePort } from "../../scripts/embedded-pg";
import { chromium, type Browser } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import { devToken, ROOT } from "../../scripts/stack";
import { mintToken } from "../../shared/token";
import { useStack } from "../support/stack";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
let browser: Browser;
// The notifiws/react test page is served from its own origin, which the Worker must allow.
const reactPagePort = await freePort();
let reactPage: Server | undefined;
// The same page on an origin the Worker does not allow.
const refusedPagePort = await freePort();
let refusedPage: Server | undefined;
const fx = useStack("browser", { extraOrigins: [`http://127.0.0.1:${reactPagePort}`], workerVars: { PRESENCE_GRACE_MS: "500" } }, async () => {
  await browser?.close();
  reactPage?.close();
  refusedPage?.close();
});

beforeAll(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}, 120_000);

describe("dashboard", () => {
  it("shows a new sale and a low-stock alert as they happen", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    await page.goto(`${fx.stack.workerUrl}/#token=${await devToken(fx.stack.secrets)}`);
    for (const pill of ["#status-sales", "#status-inventory", "#status-alerts"]) await page.waitForSelector(`${pill}[data-state="open"]`, { timeout: 15_000 });
    await page.waitForSelector("#inventory tr[data-sku='KB-01']", { timeout: 15_000 });
    const before = Number(await page.textContent("#sales-count"));

    await fx.db.query("INSERT INTO ventas (sku, quantity, total, customer_email) VALUES ('KB-01', 3, 267.00, 'someone@example.com')");
    await page.waitForFunction((n) => document.querySelector("#sales-count")?.textContent === String(n), before + 1, { timeout: 15_000 });
    expect(await page.textContent("#revenue")).toContain("267");

    await fx.db.query("UPDATE inventory SET stock = 2 WHERE sku = 'MN-03'");
    await page.waitForSelector("#inventory tr.low[data-sku='MN-03']", { timeout: 15_000 });
    const toast = await page.waitForSelector(".toast", { timeout: 15_000 });
    expect(await toast.textContent()).toContain("MN-03");
    // The low-stock list is a live table of a derived channel: the item enters it, and leaves once restocked.
    const lowCount = async () => Number(await page.textContent("#alert-count"));
    const lowInDb = async () => (await fx.db.query<{ n: number }>("SELECT count(*)::int AS n FROM inventory WHERE stock < 5")).rows[0]!.n;
    await page.waitForFunction((n) => document.querySelector("#alert-count")?.textContent === String(n), await lowInDb(), { timeout: 15_000 });
    const withLow = await lowCount();
    await fx.db.query("UPDATE inventory SET stock = 40 WHERE sku = 'MN-03'");
    await page.waitForSelector("#inventory tr[data-sku='MN-03']:not(.low)", { timeout: 15_000 });
    await page.waitForFunction((n) => document.querySelector("#alert-count")?.textContent === String(n), withLow - 1, { timeout: 15_000 });
    expect(await lowCount()).toBe(await lowInDb());
    expect(await page.textContent("#log")).not.toContain("someone@example.com");

    // Commit → browser latency over the last minute, per channel.
    const latencyRow = await page.waitForSelector("#latency tr[data-channel='sales']", { timeout: 15_000 });
    const [p50, p99, n] = await latencyRow.$$eval("td.num", (tds) => tds.map((td) => td.textContent ?? ""));
    expect(p50).toMatch(/^\d+ ms$/);
    expect(p99).toMatch(/^\d+ ms$/);
    expect(Number(n)).toBeGreaterThanOrEqual(1);
    expect(parseInt(p99!, 10)).toBeGreaterThanOrEqual(parseInt(p50!, 10));

    await mkdir(join(ROOT, "test-results"), { recursive: true });
    await page.screenshot({ path: join(ROOT, "test-results/dashboard.png") });
    expect(pageErrors).toEqual([]);
  });

  it("a page loaded while sales are being written shows counters equal to the database once writes stop", async () => {
    const today = "SELECT count(*)::int AS n, coalesce(sum(total), 0)::float8 AS revenue FROM ventas WHERE created_at >= date_trunc('day', now())";
    for (let reload = 0; reload < 3; reload++) {
      let writing = true;
      // Four concurrent writers, one sale per transaction every ~20 ms each (pacing, so writes are still
      // running while the page subscribes and loads), until the page has loaded (at most 500 each).
      const writers = [0, 1, 2, 3].map(async (w) => {
        for (let i = 0; writing && i < 500; i++) {
          await fx.db.query("INSERT INTO ventas (sku, quantity, total) VALUES ('CB-05', 1, $1::numeric)", [9.9 + w]);
          await new Promise((r) => setTimeout(r, 20));
        }
      });
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      try {
        await page.goto(`${fx.stack.workerUrl}/#token=${await devToken(fx.stack.secrets)}`);
        await page.waitForSelector("#inventory tr[data-sku='KB-01']", { timeout: 15_000 });
        writing = false;
        await Promise.all(writers);
        const db = (await fx.db.query<{ n: number; revenue: number }>(today)).rows[0]!;
        await page
          .waitForFunction((n) => document.querySelector("#sales-count")?.textContent === String(n), db.n, { timeout: 15_000 })
          .catch(async () => {
            throw new Error(`reload ${reload}: dashboard shows ${await page.textContent("#sales-count")} sales, the database has ${db.n}`);
          });
        const shown = await page.textContent("#revenue");
        const expected = await page.evaluate((v) => new Intl.NumberFormat(undefined, { style: "currency", currency: "USD" }).format(v), db.revenue);
        expect(shown).toBe(expected);
      } finally {
        writing = false;
        await Promise.all(writers);
        await page.close();
      }
    }
  });

  it("shows who else has it open, with their screen, and drops a user who closes it", async () => {
    const ana = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const bob = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
    try {
      await ana.goto(`${fx.stack.workerUrl}/#token=${await devToken(fx.stack.secrets, { sub: "ana" })}`);
      await ana.waitForSelector("#watchers li[data-sub='ana']", { timeout: 15_000 });
      await bob.goto(`${fx.stack.workerUrl}/#token=${await devToken(fx.stack.secrets, { sub: "bob" })}`);
      const chip = await ana.waitForSelector("#watchers li[data-sub='bob']", { timeout: 15_000 });
      await ana.waitForFunction(() => document.querySelector("#watchers li[data-sub='bob']")?.textContent?.includes("phone"), undefined, { timeout: 15_000 });
      expect(await chip.textContent()).toBe("bob · phone");
      await bob.close();
      await ana.waitForSelector("#watchers li[data-sub='bob']", { state: "detached", timeout: 15_000 });
      expect(await ana.textContent("#watchers li[data-sub='ana']")).toBe("ana · desktop");
    } finally {
      await ana.close();
      if (!bob.isClosed()) await bob.close();
    }
  });

  it("fits a phone screen without horizontal scrolling", async () => {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
    await page.goto(`${fx.stack.workerUrl}/#token=${await devToken(fx.stack.secrets)}`);
    await page.waitForSelector("#inventory tr[data-sku='KB-01']", { timeout: 15_000 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await mkdir(join(ROOT, "test-results"), { recursive: true });
    await page.screenshot({ path: join(ROOT, "test-results/dashboard-phone.png"), fullPage: true });
  });
});

describe("a browser's own WebSocket (docs/protocol.md, Close codes)", () => {
  it("Chromium fires close within 3 s of the token's expiry, although the runtime keeps the TCP connection of a 4001 close open longer", async () => {
    const page = await browser.newPage();
    await page.goto(`${fx.stack.workerUrl}/health`);
    const token = await mintToken({ secret: fx.stack.secrets.JWT_SECRET, sub: "raw", channels: ["*"], ttlSeconds: 3 });
    const exp = (JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as { exp: number }).exp * 1000;
    const closed = await page.evaluate(
      ([url, t]) =>
        new Promise<{ code: number; at: number }>((resolve) => {
          const ws = new WebSocket(url!, ["notifiws.v1", `bearer.${t}`]);
          ws.onclose = (e) => resolve({ code: e.code, at: Date.now() });
        }),
      [`${fx.stack.workerUrl.replace(/^http/, "ws")}/ws/raw.expiry`, token],
    );
    expect(closed.code).toBe(4001);
    expect(closed.at - exp).toBeLessThan(3000);
    await page.close();
  });
});

describe("notifiws/react", () => {
  beforeAll(async () => {
    const bundle = await build({
      entryPoints: [join(ROOT, "test/support/react-page/app.tsx")],
      bundle: true,
      format: "esm",
      write: false,
      jsx: "automatic",
      // The development build: StrictMode mounts every effect twice.
      define: { "process.env.NODE_ENV": '"development"' },
      logLevel: "warning",
    });
    const js = bundle.outputFiles[0]!.text;
    const html = `<!doctype html><meta charset="utf-8"><title>useChannel</title><div id="root"></div><script type="module" src="/app.js"></script>`;
    reactPage = createServer((req, res) => {
      if (req.url === "/app.js") res.writeHead(200, { "content-type": "text/javascript" }).end(js);
      else res.writeHead(200, { "content-type": "text/html" }).end(html);
    });
    await new Promise<void>((r) => reactPage!.listen(reactPagePort, "127.0.0.1", r));
    refusedPage = createServer((req, res) => {
      if (req.url === "/app.js") res.writeHead(200, { "content-type": "text/javascript" }).end(js);
      else res.writeHead(200, { "content-type": "text/html" }).end(html);
    });
    await new Promise<void>((r) => refusedPage!.listen(refusedPagePort, "127.0.0.1", r));
  });

  it("an app on an origin the Worker does not allow sees ORIGIN_NOT_ALLOWED (permanent) from useChannel and useSyncedState, not reconnecting forever", async () => {
    const page = await browser.newPage();
    const hash = new URLSearchParams({ url: fx.stack.workerUrl, token: await devToken(fx.stack.secrets), mode: "refused" });
    await page.goto(`http://127.0.0.1:${refusedPagePort}/#${hash}`);
    await page.waitForFunction(
      () => document.querySelector("#channel-error")?.textContent !== "" && document.querySelector("#synced-error")?.textContent !== "",
      undefined,
      { timeout: 15_000 },
    );
    expect(await page.textContent("#channel-error")).toBe("ORIGIN_NOT_ALLOWED permanent");
    expect(await page.textContent("#synced-error")).toBe("ORIGIN_NOT_ALLOWED permanent");
    expect(await page.textContent("#status")).toBe("closed");
    await page.close();
  });

  it("useChannel under StrictMode: one connection, events arrive, status changes, a channel change and unmount close the socket", async () => {
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    const hash = new URLSearchParams({ url: fx.stack.workerUrl, token: await devToken(fx.stack.secrets) });
    await page.goto(`http://127.0.0.1:${reactPagePort}/#${hash}`);
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "open", undefined, { timeout: 15_000 });
    expect(await page.evaluate(() => (window as unknown as { __sockets: WebSocket[] }).__sockets.length)).toBe(1);

    const id = (await fx.db.query<{ id: string }>("INSERT INTO ventas (sku, quantity, total) VALUES ('KB-01', 1, 89.00) RETURNING id")).rows[0]!.id;
    await page.waitForFunction((want) => [...document.querySelectorAll("#events li")].some((li) => li.textContent === want), id, { timeout: 15_000 });

    // A channel change closes the old socket and opens one new one.
    await page.evaluate(() => (window as unknown as { __setChannel: (c: string | null) => void }).__setChannel("inventory"));
    await page.waitForFunction(
      () => document.querySelector("#channel")?.textContent === "inventory" && document.querySelector("#status")?.textContent === "open",
      undefined,
      {
        timeout: 15_000,
      },
    );
    const afterSwitch = await page.evaluate(() => (window as unknown as { __sockets: WebSocket[] }).__sockets.map((s) => s.readyState));
    expect(afterSwitch).toHaveLength(2);
    expect(afterSwitch[0]).toBeGreaterThanOrEqual(WebSocket.CLOSING);
    expect(afterSwitch[1]).toBe(WebSocket.OPEN);

    // Unmount closes it.
    await page.evaluate(() => (window as unknown as { __setChannel: (c: string | null) => void }).__setChannel(null));
    await page.waitForFunction(() => (window as unknown as { __sockets: WebSocket[] }).__sockets.every((s) => s.readyState === WebSocket.CLOSED), undefined, {
      timeout: 15_000,
    });
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it("usePresence under StrictMode: one connection, the page lists its user with the metadata it sets, and a change of it shows", async () => {
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    const hash = new URLSearchParams({ url: fx.stack.workerUrl, token: await devToken(fx.stack.secrets, { sub: "react-user" }), mode: "presence" });
    await page.goto(`http://127.0.0.1:${reactPagePort}/#${hash}`);
    await page.waitForFunction(() => document.querySelector("#members li[data-sub='react-user']")?.textContent === "orders", undefined, { timeout: 15_000 });
    expect(await page.evaluate(() => (window as unknown as { __sockets: WebSocket[] }).__sockets.length)).toBe(1);
    await page.evaluate(() => (window as unknown as { __setViewing: (v: string) => void }).__setViewing("stock"));
    await page.waitForFunction(() => document.querySelector("#members li[data-sub='react-user']")?.textContent === "stock", undefined, { timeout: 15_000 });
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it("useLiveTable under StrictMode: one connection, the rows equal the table, an update shows", async () => {
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    const hash = new URLSearchParams({ url: fx.stack.workerUrl, token: await devToken(fx.stack.secrets), mode: "table" });
    await page.goto(`http://127.0.0.1:${reactPagePort}/#${hash}`);
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "open", undefined, { timeout: 15_000 });
    const shown = () => page.$$eval("#rows li", (lis) => lis.map((li) => [li.getAttribute("data-sku"), Number(li.textContent)]));
    const inDb = async () =>
      (await fx.db.query<{ sku: string; stock: number }>("SELECT sku, stock FROM inventory ORDER BY sku")).rows.map((r) => [r.sku, r.stock]);
    expect(await shown()).toEqual(await inDb());
    await fx.db.query("UPDATE inventory SET stock = stock + 7 WHERE sku = 'HD-04'");
    const want = JSON.stringify(await inDb());
    await page.waitForFunction(
      (w) => JSON.stringify([...document.querySelectorAll("#rows li")].map((li) => [li.getAttribute("data-sku"), Number(li.textContent)])) === w,
      want,
      { timeout: 15_000 },
    );
    expect(await page.evaluate(() => (window as unknown as { __sockets: WebSocket[] }).__sockets.length)).toBe(1);
    expect(pageErrors).toEqual([]);
    await page.close();
  });
});
