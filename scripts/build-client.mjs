// Bundles the dashboard (client/dashboard/app.ts + the SDK) into public/app.js for the browser.
import { build } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
await build({
  entryPoints: [join(root, "client/dashboard/app.ts")],
  outfile: join(root, "public/app.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  sourcemap: true,
  logLevel: "warning",
});
