/**
 * The demo dashboard: initial state from GET /api/demo/state (Postgres through
 * the Neon driver), then live updates from three subscriptions: sales,
 * inventory and inventory.alerts.
 */
import { connect, type ConnectionState, type Envelope, type Subscription } from "../index";
import type { DemoState } from "../../src/routes/demo";

interface InventoryRow {
  sku: string;
  name: string;
  stock: number;
  price: number;
  updated_at: string;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const money = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD" });
const LOW_STOCK = 5;

const state = {
  salesToday: 0,
  revenueToday: 0,
  lastSaleId: 0,
  alerts: 0,
  perMinute: new Map<number, number>(),
  inventory: new Map<string, InventoryRow>(),
};

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
  $("alert-count").textContent = String(state.alerts);
}

function renderChart() {
  const svg = $("chart") as unknown as SVGSVGElement;
  const now = Math.floor(Date.now() / 60_000);
  const minutes = Array.from({ length: 30 }, (_, i) => now - 29 + i);
  const values = minutes.map((m) => state.perMinute.get(m) ?? 0);
  const max = Math.max(1, ...values);
  const w = 600 / minutes.length;
  svg.innerHTML = values
    .map((v, i) => {
      const h = (v / max) * 140;
      return `<rect x="${i * w + 1}" y="${150 - h}" width="${w - 2}" height="${h}"><title>${money.format(v)}</title></rect>`;
    })
    .join("") + `<text x="2" y="10">${money.format(max)}</text><text x="2" y="158">−30 min</text><text x="560" y="158">now</text>`;
}

function renderInventory(flashSku?: string) {
  const body = $("inventory");
  body.innerHTML = "";
  for (const row of [...state.inventory.values()].sort((a, b) => a.sku.localeCompare(b.sku))) {
    const tr = document.createElement("tr");
    tr.dataset.sku = row.sku;
    if (row.stock < LOW_STOCK) tr.classList.add("low");
    if (row.sku === flashSku) tr.classList.add("flash");
    for (const [text, cls] of [[row.sku], [row.name], [String(row.stock), "num"], [money.format(row.price), "num"]] as [string, string?][]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function logEvent(e: Envelope) {
  const li = document.createElement("li");
  li.textContent = `#${e.seq} ${e.channel} ${e.op} ${JSON.stringify(e.data)}`;
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

function onSale(e: Envelope) {
  logEvent(e);
  const sale = e.data as { id: number; total: number | string; created_at: string } | null;
  if (e.op !== "insert" || !sale || sale.id <= state.lastSaleId) return; // already in the initial totals
  state.lastSaleId = sale.id;
  state.salesToday += 1;
  state.revenueToday += Number(sale.total);
  const minute = Math.floor(Date.parse(sale.created_at) / 60_000);
  state.perMinute.set(minute, (state.perMinute.get(minute) ?? 0) + Number(sale.total));
  renderTotals();
  renderChart();
}

function onInventory(e: Envelope) {
  logEvent(e);
  const row = e.data as InventoryRow | null;
  if (!row) return;
  if (e.op === "delete") state.inventory.delete(row.sku);
  else {
    const known = state.inventory.get(row.sku);
    // Skip events older than the snapshot (the snapshot may already include them).
    if (known && Date.parse(known.updated_at) > Date.parse(row.updated_at)) return;
    state.inventory.set(row.sku, { ...row, price: Number(row.price) });
  }
  renderInventory(row.sku);
}

function onAlert(e: Envelope) {
  logEvent(e);
  const row = e.data as { sku: string; name: string; stock: number } | null;
  if (!row) return;
  state.alerts += 1;
  renderTotals();
  toast(`Low stock: ${row.name} (${row.sku}) has ${row.stock} left`);
}

async function loadState(token: string): Promise<void> {
  const res = await fetch("/api/demo/state", { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`initial state: ${res.status} ${await res.text()}`);
  const s = (await res.json()) as DemoState;
  state.salesToday = s.salesToday;
  state.revenueToday = s.revenueToday;
  state.lastSaleId = Math.max(state.lastSaleId, s.lastSaleId);
  state.perMinute = new Map(s.perMinute.map((p) => [Math.floor(Date.parse(p.minute) / 60_000), p.revenue]));
  state.inventory = new Map(s.inventory.map((r) => [r.sku, r]));
  renderTotals();
  renderChart();
  renderInventory();
}

function start(token: string) {
  const subs: Subscription[] = [];
  const lag = () => {
    const lags = subs.map((s) => s.lagMs).filter((x): x is number => x !== undefined);
    $("lag").textContent = lags.length ? `${Math.max(0, Math.min(...lags))} ms` : "–";
  };
  const sub = (channel: string, pill: string, onEvent: (e: Envelope) => void) =>
    connect({
      url: location.origin,
      channel,
      token,
      onEvent: (e) => {
        onEvent(e);
        lag();
      },
      onReset: () => loadState(token),
      onStateChange: (s: ConnectionState) => ($(pill).dataset.state = s),
      onError: (err) => {
        if (err.permanent) toast(`${channel}: ${err.message}`);
      },
    });
  // Subscribe first, then read the snapshot: events racing the snapshot are reconciled by id / updated_at.
  subs.push(sub("sales", "status-sales", onSale), sub("inventory", "status-inventory", onInventory), sub("inventory.alerts", "status-alerts", onAlert));
  loadState(token).catch((err: Error) => toast(err.message));
  setInterval(renderChart, 30_000);
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
