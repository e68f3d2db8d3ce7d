/**
 * A small React app for the browser test of notifiws/react: one useChannel
 * (or, with mode=table, one useLiveTable; with mode=presence, one
 * usePresence on the `dashboard` channel) under StrictMode (development
 * build, so effects mount, unmount and mount again), counting every
 * WebSocket the page creates.
 */
import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { useChannel, useLiveTable, usePresence, useSyncedState } from "../../../client/react";

const sockets: WebSocket[] = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(url: string | URL, protocols?: string | string[]) {
    super(url, protocols);
    sockets.push(this);
  }
} as typeof WebSocket;
Object.assign(window, { __sockets: sockets });

const params = new URLSearchParams(location.hash.slice(1));
const url = params.get("url")!;
const token = params.get("token")!;

function Feed({ channel }: { channel: string }) {
  const view = useChannel(channel, { url, token });
  return (
    <section>
      <p id="status">{view.status}</p>
      <p id="channel">{channel}</p>
      <ul id="events">
        {view.events.map((e) => (
          <li key={e.seq}>{String(e.data?.id)}</li>
        ))}
      </ul>
    </section>
  );
}

/** On an origin the Worker does not allow: both hooks must show the refusal. */
function Refused() {
  const channel = useChannel("sales", { url, token });
  const synced = useSyncedState<number>({ url, token, channels: ["sales"], load: () => new Promise(() => {}), apply: (n) => n + 1 });
  return (
    <section>
      <p id="channel-error">{channel.error ? `${channel.error.code} ${channel.error.permanent ? "permanent" : "retrying"}` : ""}</p>
      <p id="synced-error">{synced.error ? `${synced.error.code} ${synced.error.permanent ? "permanent" : "retrying"}` : ""}</p>
      <p id="status">{channel.status}</p>
    </section>
  );
}

/** The inventory as a live table: rows from the edge, kept equal to the database. */
function Table() {
  const table = useLiveTable<{ sku: string; stock: number }>("inventory", { url, token });
  return (
    <section>
      <p id="status">{table.status}</p>
      <ul id="rows">
        {table.rows.map((r) => (
          <li key={r.sku} data-sku={r.sku}>
            {r.stock}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** Who else has the page open; the metadata follows a state change (`__setViewing`). */
function Watchers() {
  const [viewing, setViewing] = useState("orders");
  Object.assign(window, { __setViewing: setViewing });
  const p = usePresence("dashboard", { url, token, meta: { viewing } });
  return (
    <section>
      <p id="status">{p.status}</p>
      <p id="counts">{`${p.users}/${p.connections}`}</p>
      <ul id="members">
        {p.members.map((m) => (
          <li key={m.sub} data-sub={m.sub}>
            {String(m.meta?.viewing ?? "")}
          </li>
        ))}
      </ul>
    </section>
  );
}

function App() {
  if (params.get("mode") === "refused") return <Refused />;
  if (params.get("mode") === "table") return <Table />;
  if (params.get("mode") === "presence") return <Watchers />;
  const [channel, setChannel] = useState<string | null>("sales");
  Object.assign(window, { __sockets: sockets, __setChannel: setChannel });
  return channel ? <Feed channel={channel} /> : <p id="gone">unmounted</p>;
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
