/**
 * Baselines in one file, run as their own process: the seeds' design ported to
 * Node. One pg LISTEN connection receives the row itself in the NOTIFY payload
 * and broadcasts it to every client: (a) `ws` server, (b) Socket.IO server.
 * argv: flavour ("ws" | "socketio"), port, databaseUrl.
 */
import { createServer } from "node:http";
import pg from "pg";
import { Server as SocketIOServer } from "socket.io";
import { WebSocketServer, WebSocket } from "ws";

const [flavour, portArg, databaseUrl] = process.argv.slice(2) as ["ws" | "socketio", string, string];
const port = Number(portArg);
const http = createServer();
let broadcast: (payload: string) => void;
let clients: () => number;

if (flavour === "ws") {
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
  broadcast = (payload) => {
    for (const c of wss.clients) if (c.readyState === WebSocket.OPEN) c.send(payload);
  };
  clients = () => wss.clients.size;
} else {
  const ioServer = new SocketIOServer(http, { transports: ["websocket"], perMessageDeflate: false, serveClient: false });
  broadcast = (payload) => ioServer.emit("event", payload);
  clients = () => ioServer.engine.clientsCount;
}

const listener = new pg.Client({ connectionString: databaseUrl });
await listener.connect();
listener.on("notification", (n) => broadcast(n.payload ?? ""));
await listener.query("LISTEN bench_rows");
http.listen(port, "127.0.0.1", () => process.send?.({ ready: true }));
process.on("message", (m: { cmd: string }) => {
  if (m.cmd === "clients") process.send?.({ clients: clients() });
  if (m.cmd === "exit") process.exit(0);
});
