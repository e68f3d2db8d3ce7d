// `npm run pack:sdk`: builds the installable `notifiws` package (ESM, type
// declarations; no runtime dependency in the browser entries) and writes its
// tarball to dist/packages/. Entries: `notifiws` (connect, syncState),
// `notifiws/react` (useChannel, useSyncedState; React is a peer dependency),
// `notifiws/server` (mintToken on jose, createPublisher), and the `notifiws` CLI.
import { execFileSync } from "node:child_process";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist/packages/build/notifiws");
const project = JSON.parse(await readFile(join(root, "package.json"), "utf8"));

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });

// The React and CLI entries share the one copy of the SDK in index.js.
const sharedIndex = {
  name: "shared-index",
  setup(b) {
    b.onResolve({ filter: /^\.\/index$/ }, () => ({ path: "./index.js", external: true }));
  },
};
// One bundle per entry: [source, options]. `react` is a peer and `jose` a dependency, never bundled.
const entries = [
  ["index", { platform: "neutral" }],
  ["react", { platform: "neutral", external: ["react"], plugins: [sharedIndex] }],
  ["server", { platform: "neutral", external: ["jose"] }],
  ["cli", { platform: "node", external: ["jose"], plugins: [sharedIndex], banner: { js: "#!/usr/bin/env node" } }],
];
for (const [entry, options] of entries)
  await build({
    bundle: true,
    format: "esm",
    target: "es2022",
    logLevel: "warning",
    legalComments: "none",
    entryPoints: [join(root, `client/${entry}.ts`)],
    outfile: join(out, `${entry}.js`),
    ...options,
  });

execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", join(root, "tsconfig.sdk.json")], { stdio: "inherit" });
// Node's ESM resolution (moduleResolution node16/nodenext in the app) needs extensions on relative imports.
for (const file of await readdir(join(out, "types"), { recursive: true })) {
  if (!file.endsWith(".d.ts")) continue;
  const path = join(out, "types", file);
  const text = await readFile(path, "utf8");
  await writeFile(
    path,
    text.replace(/(from\s+["'])(\.{1,2}\/[^"']+?)(["'])/g, (_, a, spec, b) => `${a}${spec.endsWith(".js") ? spec : `${spec}.js`}${b}`),
  );
}

const types = (entry) => `./types/client/${entry}.d.ts`;
const pkg = {
  name: "notifiws",
  version: project.version,
  description: "Client SDK for notifiws: real-time updates from Postgres to every browser, at the edge.",
  type: "module",
  license: "MIT",
  engines: { node: ">=20" },
  sideEffects: false,
  exports: {
    ".": { types: types("index"), import: "./index.js" },
    "./react": { types: types("react"), import: "./react.js" },
    "./server": { types: types("server"), import: "./server.js" },
    "./package.json": "./package.json",
  },
  types: types("index"),
  bin: { notifiws: "./cli.js" },
  // Only the server entry and the CLI use jose; the browser entries import nothing.
  dependencies: { jose: project.dependencies.jose },
  peerDependencies: { react: ">=18" },
  peerDependenciesMeta: { react: { optional: true } },
  files: ["*.js", "types/", "README.md"],
};
await writeFile(join(out, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
await writeFile(
  join(out, "README.md"),
  `# notifiws

Client SDK for notifiws: real-time updates from Postgres to every browser, at the edge.

- \`notifiws\`: \`connect()\` (reconnect, resume by seq, heartbeat, token refresh) and \`syncState()\` (initial state plus live events, no gap and no double count).
- \`notifiws/react\`: \`useChannel(channel, options)\` and \`useSyncedState(options)\`.
- \`notifiws/server\`: \`mintToken({ secret, sub, channels, role?, ttlSeconds? })\` and \`createPublisher({ url, key }).publish(channel, { id?, data })\`.
- \`npx notifiws tail <channel>\`, \`npx notifiws token --channels sales\`.

The wire protocol is documented in docs/protocol.md of the notifiws repository.
`,
);

const dest = join(root, "dist/packages");
const file = execFileSync("npm", ["pack", "--silent", "--pack-destination", dest], { cwd: out, encoding: "utf8" }).trim().split("\n").pop();
console.log(join(dest, file));
