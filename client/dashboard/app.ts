/**
 * The demo dashboard. Sales totals and revenue per minute (aggregates) come
 * from GET /api/demo/state (Postgres through the Neon driver, one REPEATABLE
 * READ transaction with its snapshot), kept live by syncState on the sales
 * channel, so the counters always equal the database. The inventory and the
 * low-stock list are live tables (liveTable: rows from the edge's rows route,
 * kept equal to the database); inventory.alerts is a derived channel, so a
 * restocked item leaves the list. Who has the dashboard open is the
 * presence of the `dashboard` channel (PRESENCE_CHANNELS in `npm run dev`).
 */
import {
  connect,
  liveTable,
  stringifyExact,
  syncState,
  type PresenceState,
  type ConnectionState,
  type Envelope,
  type LiveTable,
  type LoadedState,
  type Subscription,
} from "../index";
import type { DemoState } from "../../shared/demo";

/** A row of the inventory channel: numeric arrives as its exact text (docs/protocol.md, "Values"). */
interface InventoryRow {
  sku: string;
  name: string;
  stock: number;
  price: string;
  updated_at: string;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const money = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD" });
const LOW_STOCK = 5;

interface DashboardState {
  salesToday: number;
  revenueToday: number;
  perMinute: Map<number, number>;
}

let state: DashboardState = { salesToday: 0, revenueToday: 0, perMinute: new Map() };
let inventory: LiveTable | undefined;
let alerts: LiveTable | undefined;

function tokenFromPage(): string | undefined {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromHash = hash.get("token");
  if (fromHash) {
    sessionStorage.setItem("notifiws.token", fromHash);
    history.replaceState(null, "", location.pathname);
    return fromHash;
  }
  return sessionStorage.getItem("notifiws.token") ?? undefined;
}

function renderTotals() {
  $("sales-count").textContent = String(state.salesToday);
  $("revenue").textContent = money.format(state.revenueToday);
  $("alert-count").textContent = String(alerts?.rows.size ?? 0);
}

function renderChart() {
  const svg = $("chart") as unknown as SVGSVGElement;
  const now = Math.floor(Date.now() / 60_000);
  const minutes = Array.from({ length: 30 }, (_, i) => now - 29 + i);
  const values = minutes.map((m) => state.perMinute.get(m) ?? 0);
  const max = Math.max(1, ...values);
  const w = 600 / minutes.length;
  svg.innerHTML =
    values
      .map((v, i) => {
        const h = (v / max) * 140;
        return `<rect x="${i * w + 1}" y="${150 - h}" width="${w - 2}" height="${h}"><title>${money.format(v)}</title></rect>`;
      })
      .join("") + `<text x="2" y="10">${money.format(max)}</text><text x="2" y="158">−30 min</text><text x="560" y="158">now</text>`;
}

function renderInventory(flashSku?: string) {
  const body = $("inventory");
  body.innerHTML = "";
  for (const row of ([...(inventory?.rows.values() ?? [])] as unknown as InventoryRow[]).sort((a, b) => a.sku.localeCompare(b.sku))) {
    const tr = document.createElement("tr");
    tr.dataset.sku = row.sku;
    if (row.stock < LOW_STOCK) tr.classList.add("low");
    if (row.sku === flashSku) tr.classList.add("flash");
    for (const [text, cls] of [[row.sku], [row.name], [String(row.stock), "num"], [money.format(Number(row.price)), "num"]] as [string, string?][]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

/** Commit → this browser, per channel, over the last minute (committedAt is the database's clock: skew shows up here). */
const LATENCY_WINDOW_MS = 60_000;
const latency = new Map<string, { at: number; ms: number }[]>();

function recordLatency(e: Envelope) {
  const now = Date.now();
  const samples = latency.get(e.channel) ?? [];
  samples.push({ at: now, ms: Math.max(0, now - e.committedAt) });
  latency.set(e.channel, samples);
}

/** The sample at quantile q of sorted values (nearest rank). */
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;

function renderLatency() {
  const cutoff = Date.now() - LATENCY_WINDOW_MS;
  const body = $("latency");
  body.innerHTML = "";
  for (const [channel, all] of [...latency].sort(([a], [b]) => a.localeCompare(b))) {
    const recent = all.filter((x) => x.at >= cutoff);
    latency.set(channel, recent);
    const tr = document.createElement("tr");
    tr.dataset.channel = channel;
    const sorted = recent.map((x) => x.ms).sort((a, b) => a - b);
    const cells = sorted.length ? [channel, `${quantile(sorted, 0.5)} ms`, `${quantile(sorted, 0.99)} ms`, String(sorted.length)] : [channel, "–", "–", "0"];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i > 0) td.className = "num";
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
}

function logEvent(e: Envelope) {
  const li = document.createElement("li");
  li.textContent = `#${e.seq} ${e.channel} ${e.op} ${stringifyExact(e.data)}`;
  const log = $("log");
  log.insertBefore(li, log.firstChild);
  while (log.children.length > 50) log.lastElementChild?.remove();
}

function toast(text: string) {
  const el = document.createElement("div");
  el.className = "toast";
  el.setAttribute("role", "alert");
  el.textContent = text;
  $("toasts").appendChild(el);
  setTimeout(() => el.remove(), 6000);
}

/** Folds one live event into the state (only events the loaded snapshot did not contain reach here). */
function applyEvent(s: DashboardState, e: Envelope): DashboardState {
  if (e.channel === "sales") {
    // int8 and numeric arrive as exact strings (docs/protocol.md, "Values").
    const sale = e.data as { id: string; total: string; created_at: string } | null;
    if (e.op !== "insert" || !sale) return s;
    s.salesToday += 1;
    s.revenueToday += Number(sale.total);
    const minute = Math.floor(Date.parse(sale.created_at) / 60_000);
    s.perMinute.set(minute, (s.perMinute.get(minute) ?? 0) + Number(sale.total));
  }
  return s;
}

/** Items that entered the low-stock list since the last change (not those of a load). */
let lowBefore: Set<string> | undefined;
function onAlerts(table: LiveTable) {
  const now = new Set(table.rows.keys());
  if (lowBefore && table.loads > 0)
    for (const sku of now)
      if (!lowBefore.has(sku)) {
        const row = table.rows.get(sku) as { name: string; stock: number };
        toast(`Low stock: ${row.name} (${sku}) has ${row.stock} left`);
      }
  if (table.loads > 0) lowBefore = now;
}

let renderPending = false;
let flash: string | undefined;
/** Coalesces renders to one per frame: a burst of events redraws once. */
function scheduleRender(flashSku?: string) {
  if (flashSku) flash = flashSku;
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    renderTotals();
    renderChart();
    renderInventory(flash);
    renderLatency();
    flash = undefined;
  });
}

async function loadState(token: string): Promise<LoadedState<DashboardState>> {
  const res = await fetch("/api/demo/state", { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`initial state: ${res.status} ${await res.text()}`);
  const s = (await res.json()) as DemoState;
  return {
    state: {
      salesToday: s.salesToday,
      revenueToday: s.revenueToday,
      perMinute: new Map(s.perMinute.map((p) => [Math.floor(Date.parse(p.minute) / 60_000), p.revenue])),
    },
    snapshot: s.snapshot,
  };
}

/** Who has the dashboard open: one chip per user, with their connections (tabs) and the size of screen they use. */
function renderWatchers(p: PresenceState) {
  $("watcher-count").textContent = `${p.users} ${p.users === 1 ? "user" : "users"}, ${p.connections} ${p.connections === 1 ? "tab" : "tabs"}`;
  $("watchers").replaceChildren(
    ...p.members.map((m) => {
      const li = document.createElement("li");
      li.dataset.sub = m.sub;
      li.textContent = `${m.sub}${m.connections > 1 ? ` ×${m.connections}` : ""}${typeof m.meta?.screen === "string" ? ` · ${m.meta.screen}` : ""}`;
      return li;
    }),
  );
}

function start(token: string) {
  const subs: Subscription[] = [];
  const lag = () => {
    const lags = subs.map((s) => s.lagMs).filter((x): x is number => x !== undefined);
    $("lag").textContent = lags.length ? `${Math.max(0, Math.min(...lags))} ms` : "–";
  };
  const pills: Record<string, string> = { sales: "status-sales", inventory: "status-inventory", "inventory.alerts": "status-alerts" };
  const setPill = (channel: string, s: ConnectionState) => ($(pills[channel]!).dataset.state = s);
  // Subscribe, load the aggregates with their snapshot, then apply exactly the events the snapshot did not see.
  const synced = syncState<DashboardState>({
    url: location.origin,
    token,
    channels: ["sales"],
    load: () => loadState(token),
    apply: applyEvent,
    onState: (s) => {
      state = s;
      scheduleRender();
      lag();
    },
    onEvent: (e) => {
      logEvent(e);
      recordLatency(e);
    },
    onStateChange: (s, channel) => setPill(channel, s),
    onLoadError: (err) => toast(err.message),
    onError: (err) => {
      if (err.permanent) toast(err.message);
    },
  });
  subs.push(...synced.subscriptions);
  // The tables: rows from the edge, kept equal to the database.
  const table = (channel: string, changed: (t: LiveTable) => void) =>
    liveTable({
      url: location.origin,
      channel,
      token,
      onChange: (t) => {
        setPill(channel, t.status);
        changed(t);
        scheduleRender();
      },
      onError: (err) => {
        if (err.permanent) toast(`${channel}: ${err.message}`);
      },
    });
  let shown = new Map<string, unknown>();
  inventory = table("inventory", (t) => {
    // Flash the row that changed.
    for (const [sku, row] of t.rows) if (shown.get(sku) !== row && shown.size > 0) flash = sku;
    shown = new Map(t.rows);
  });
  alerts = table("inventory.alerts", onAlerts);
  const watching = connect({ url: location.origin, channel: "dashboard", token, presence: true, onPresence: renderWatchers });
  watching.setPresence({ screen: matchMedia("(max-width: 700px)").matches ? "phone" : "desktop" });
  subs.push(watching);
  setInterval(renderChart, 30_000);
  setInterval(renderLatency, 5_000); // samples age out of the window even when no event arrives
}

const token = tokenFromPage();
if (token) start(token);
else {
  const form = $("token-form") as HTMLFormElement;
  form.hidden = false;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = ($("token-input") as HTMLInputElement).value.trim();
    if (!t) return;
    sessionStorage.setItem("notifiws.token", t);
    form.hidden = true;
    start(t);
  });
}
