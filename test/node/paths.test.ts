/**
 * Every file path a comment or a document names exists: the README, docs/
 * and the code point readers at files, and a renamed or removed file must not
 * leave them pointing nowhere.
 */
import { readdirSync, readFileSync, statSync, existsSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../support/process";

const SCANNED = [
  "README.md",
  "docs",
  "src",
  "shared",
  "durable-objects",
  "relay",
  "client",
  "db",
  "scripts",
  "bench",
  "test",
  ".ci",
  "wrangler.toml",
  "package.json",
];
const SKIP = new Set(["node_modules", "results", "dist"]);
const TEXT = /\.(ts|tsx|mjs|js|md|sql|toml|json|html|css)$|^run$/;
/** A project path: one of the project's folders, then a file name with an extension. */
const PATH =
  /(?<![\w./@-])((?:src|shared|durable-objects|relay|client|db|scripts|bench|test|docs|public|\.ci)\/[\w.\-/]*\.(?:ts|tsx|mjs|js|md|sql|toml|json|html|css|svg))\b/g;

function files(path: string): string[] {
  const abs = join(ROOT, path);
  if (!existsSync(abs)) return [];
  if (statSync(abs).isFile()) return TEXT.test(path.split("/").pop()!) ? [path] : [];
  return readdirSync(abs).flatMap((name) => (SKIP.has(name) ? [] : files(join(path, name))));
}

describe("paths named in comments and documents", () => {
  it("all exist", () => {
    const missing: string[] = [];
    for (const file of SCANNED.flatMap(files)) {
      const text = readFileSync(join(ROOT, file), "utf8");
      for (const m of text.matchAll(PATH)) {
        const named = m[1]!;
        // Paths in generated or example output (globs, placeholders) are not claims about this tree.
        if (named.includes("*") || named.includes("<")) continue;
        if (!existsSync(join(ROOT, named))) missing.push(`${relative(ROOT, join(ROOT, file))}: ${named}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
