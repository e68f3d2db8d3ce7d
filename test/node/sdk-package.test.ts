/**
 * The SDK as an app installs it: `npm run pack:sdk`, install the tarball into
 * an app outside this repository, import every entry in Node, typecheck a
 * TypeScript file against the declarations, and run the CLI.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../support/process";

let app: string;
const run = (cmd: string, args: string[], cwd = app) => execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

beforeAll(async () => {
  const tarball = run(process.execPath, [join(ROOT, "scripts/pack-sdk.mjs")], ROOT)
    .trim()
    .split("\n")
    .pop()!;
  expect(tarball).toMatch(/dist\/packages\/notifiws-[\d.]+\.tgz$/);
  app = await mkdtemp(join(tmpdir(), "notifiws-app-"));
  await writeFile(join(app, "package.json"), JSON.stringify({ name: "an-app", private: true, type: "module" }));
  // React for the typecheck of notifiws/react; everything comes from npm's cache when it can.
  run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", tarball, "react@19", "@types/react@19"]);
}, 180_000);

afterAll(async () => {
  if (app) await rm(app, { recursive: true, force: true });
});

describe("the installable notifiws package", () => {
  it("imports every entry in Node with what the docs promise", () => {
    const out = run(process.execPath, [
      "--input-type=module",
      "-e",
      `const [a, r, s] = await Promise.all([import("notifiws"), import("notifiws/react"), import("notifiws/server")]);
       console.log(JSON.stringify({ index: Object.keys(a).sort(), react: Object.keys(r).sort(), server: Object.keys(s).sort() }));`,
    ]);
    const keys = JSON.parse(out) as Record<string, string[]>;
    expect(keys.index).toEqual(expect.arrayContaining(["connect", "syncState", "parseSnapshot", "visibleInSnapshot", "SdkErrorCode"]));
    expect(keys.react).toEqual(expect.arrayContaining(["useChannel", "useSyncedState"]));
    expect(keys.server).toEqual(expect.arrayContaining(["mintToken", "createPublisher", "PublishError"]));
  });

  it("has no runtime dependency in the browser entries", () => {
    const pkg = JSON.parse(run(process.execPath, ["-p", "JSON.stringify(require('./node_modules/notifiws/package.json'))"])) as {
      dependencies: Record<string, string>;
      peerDependencies: Record<string, string>;
    };
    expect(Object.keys(pkg.dependencies)).toEqual(["jose"]); // server entry and CLI only
    expect(Object.keys(pkg.peerDependencies)).toEqual(["react"]);
    const index = run(process.execPath, ["-p", "require('fs').readFileSync('./node_modules/notifiws/index.js','utf8')"]);
    expect(index).not.toMatch(/from\s*["'](?!\.)/); // imports nothing but itself
  });

  it("typechecks an app against the declarations (nodenext resolution)", async () => {
    await writeFile(
      join(app, "app.ts"),
      `import { connect, syncState, type Envelope, type SubscriptionError } from "notifiws";
import { useChannel } from "notifiws/react";
import { mintToken, createPublisher } from "notifiws/server";
const sub = connect({ url: "http://127.0.0.1:8787", channel: "sales", token: "t", onEvent: (e: Envelope) => e.seq.toFixed() });
const synced = syncState<{ n: number }>({
  url: "x", channels: ["sales"], token: "t",
  load: async () => ({ state: { n: 0 }, snapshot: "1:2:" }),
  apply: (s, e) => ({ n: s.n + (e.op === "insert" ? 1 : 0) }),
});
export function View() { const v = useChannel("sales", { url: "x", token: "t" }); return v.events.length + (v.status === "open" ? 1 : 0); }
export const token: Promise<string> = mintToken({ secret: "x".repeat(32), sub: "u", channels: ["sales"] });
export const published = createPublisher({ url: "x", key: "k" }).publish("sales", { data: { a: 1 } }).then((r) => r.headSeq);
const err: SubscriptionError | undefined = undefined;
sub.close(); synced.close(); void err;
// @ts-expect-error seq is a number
const wrong: string = ({} as Envelope).seq;
void wrong;
`,
    );
    await writeFile(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: "nodenext",
          moduleResolution: "nodenext",
          target: "es2022",
          lib: ["es2022", "dom"],
          noEmit: true,
          skipLibCheck: false,
          types: [],
        },
        files: ["app.ts"],
      }),
    );
    const tsc = join(ROOT, "node_modules/.bin/tsc");
    expect(() => run(tsc, ["-p", "."])).not.toThrow();
  });

  it("mints a token from the CLI and from notifiws/server that verifies with the secret", async () => {
    const secret = "cli-test-secret-0123456789abcdef0123456789";
    const fromCli = run(join(app, "node_modules/.bin/notifiws"), [
      "token",
      "--secret",
      secret,
      "--sub",
      "alice",
      "--channels",
      "sales,orders.*",
      "--ttl",
      "600",
    ]).trim();
    const fromLib = run(process.execPath, [
      "--input-type=module",
      "-e",
      `import { mintToken } from "notifiws/server"; console.log(await mintToken({ secret: ${JSON.stringify(secret)}, sub: "bob", channels: ["sales"], role: "admin" }));`,
    ]).trim();
    const key = new TextEncoder().encode(secret);
    expect((await jwtVerify(fromCli, key)).payload).toMatchObject({ sub: "alice", channels: ["sales", "orders.*"] });
    expect((await jwtVerify(fromLib, key)).payload).toMatchObject({ sub: "bob", channels: ["sales"], role: "admin" });
  });
});
