/**
 * `notifiws tail <channel> [--since N] [--filter JSON] [--url URL] [--token T]`
 * Prints events as JSON lines on stdout; connection status goes to stderr as
 * JSON lines. Ctrl-C closes the subscription and exits 0.
 *
 * `notifiws token [--sub S] [--channels a,b.*] [--role R] [--ttl SECONDS] [--secret S]`
 * Prints a client token signed with --secret, JWT_SECRET, or the local
 * stack's secret (.notifiws/secrets.json).
 *
 * Defaults: --url from NOTIFIWS_URL or http://127.0.0.1:8787; --token from
 * NOTIFIWS_TOKEN, or a dev token minted from .notifiws/secrets.json when
 * `npm run dev` is running in this checkout.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { mintToken } from "../shared/token";
import { connect, stringifyExact, type Filter, type SubscriptionError } from "./index";
import { parseJsonExact } from "../shared/exact-json";

const USAGE = [
  "usage: notifiws tail <channel> [--since N] [--filter JSON] [--url URL] [--token TOKEN]",
  "       notifiws token [--sub SUBJECT] [--channels a,b.*] [--role ROLE] [--ttl SECONDS] [--secret SECRET]",
].join("\n");

function die(code: string, message: string): never {
  process.stderr.write(JSON.stringify({ level: "error", code, msg: message }) + "\n");
  process.exit(2);
}

/** The local stack's JWT secret, when `npm run dev` has run in this folder (or in NOTIFIWS_STATE_DIR, as npm run dev reads it). */
function localSecret(): string | undefined {
  const file = join(process.env.NOTIFIWS_STATE_DIR || join(process.cwd(), ".notifiws"), "secrets.json");
  if (!existsSync(file)) return undefined;
  return (JSON.parse(readFileSync(file, "utf8")) as { JWT_SECRET: string }).JWT_SECRET;
}

async function devToken(): Promise<string | undefined> {
  const secret = localSecret();
  return secret ? mintToken({ secret, sub: "cli", channels: ["*"] }) : undefined;
}

async function token(values: { sub?: string; channels?: string; role?: string; ttl?: string; secret?: string }): Promise<void> {
  const secret = values.secret ?? process.env.JWT_SECRET ?? localSecret();
  if (!secret) die("NO_SECRET", "pass --secret or JWT_SECRET (or run npm run dev in this folder)");
  const ttl = Number(values.ttl ?? "3600");
  if (!Number.isSafeInteger(ttl) || ttl <= 0) die("BAD_ARGS", "--ttl must be a positive number of seconds");
  const channels = (values.channels ?? "*")
    .split(",")
    .map((c) => c.trim())
    .filter(Boolean);
  try {
    process.stdout.write((await mintToken({ secret, sub: values.sub ?? "cli", channels, role: values.role, ttlSeconds: ttl })) + "\n");
  } catch (err) {
    die("BAD_ARGS", (err as Error).message);
  }
}

export async function main(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        since: { type: "string" },
        filter: { type: "string" },
        url: { type: "string" },
        token: { type: "string" },
        sub: { type: "string" },
        channels: { type: "string" },
        role: { type: "string" },
        ttl: { type: "string" },
        secret: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    die("BAD_ARGS", `${(err as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return;
  }
  const [command, channel] = positionals;
  if (command === "token") return token(values);
  if (command !== "tail" || !channel) die("BAD_ARGS", USAGE);
  let since: number | undefined;
  if (values.since !== undefined) {
    since = Number(values.since);
    if (!Number.isSafeInteger(since) || since < 0) die("BAD_ARGS", "--since must be a non-negative integer");
  }
  let filter: Filter | undefined;
  if (values.filter !== undefined) {
    try {
      // A number a float cannot hold stays its decimal text, which filters compare exactly.
      filter = parseJsonExact(values.filter, "text") as Filter;
    } catch {
      die("BAD_ARGS", '--filter must be JSON, e.g. \'{"where":[{"field":"stock","op":"lt","value":5}]}\'');
    }
  }
  // The same PORT npm run dev reads, so `PORT=8790 npm run dev` and `PORT=8790 npx notifiws tail` meet.
  const url = values.url ?? process.env.NOTIFIWS_URL ?? `http://127.0.0.1:${process.env.PORT || 8787}`;
  if (!globalThis.WebSocket) die("NODE_TOO_OLD", `notifiws tail needs Node 22 or newer (a built-in WebSocket); this is Node ${process.versions.node}`);
  const fixed = values.token ?? process.env.NOTIFIWS_TOKEN;
  const getToken = fixed
    ? () => fixed
    : async () => (await devToken()) ?? die("NO_TOKEN", "pass --token or NOTIFIWS_TOKEN (or run npm run dev in this folder)");

  const status = (fields: object) => void process.stderr.write(JSON.stringify({ level: "info", ...fields }) + "\n");
  let refused: SubscriptionError | undefined;
  await new Promise<void>((resolve) => {
    const sub = connect({
      url,
      channel,
      since,
      filter,
      getToken,
      // Values as sent on the wire, digit for digit (docs/protocol.md, "Values").
      values: { raw: true },
      onEvent: (e) => process.stdout.write(stringifyExact(e) + "\n"),
      onReset: (info) => {
        status({ msg: "reset: events were missed, refetch state", ...info });
      },
      onStateChange: (state) => {
        status({ msg: "state", state, channel });
        if (state === "closed") resolve();
      },
      // Every retry says why; a permanent refusal ends the command with exit code 1.
      onError: (err) => {
        if (err.permanent) refused = err;
        process.stderr.write(JSON.stringify({ level: err.permanent ? "error" : "warn", ...err }) + "\n");
      },
    });
    const stop = () => {
      sub.close();
      resolve();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  if (refused) process.exit(1);
}

await main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => die("FAILED", (err as Error).message),
);
