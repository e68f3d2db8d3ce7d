/** docs/protocol.md's table of HTTP errors says what the code does: every code, its status and its retry class (shared/http-errors.ts). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { HTTP_ERRORS } from "../../shared/http-errors";
import { ROOT } from "../support/process";

describe("docs/protocol.md, HTTP errors", () => {
  it("lists every code with the status and retry class the Worker uses", () => {
    const doc = readFileSync(join(ROOT, "docs/protocol.md"), "utf8");
    const section = doc.slice(doc.indexOf("## HTTP errors"), doc.indexOf("## Ingest (relay"));
    const documented = new Map<string, { status: number; retry: string }>();
    for (const line of section.split("\n")) {
      const cells = line.split("|").map((c) => c.trim());
      if (!/^\d{3}$/.test(cells[1] ?? "")) continue;
      for (const [, code] of cells[2]!.matchAll(/`([A-Z_]+)`/g)) documented.set(code!, { status: Number(cells[1]), retry: cells[3]! });
    }
    const inCode = Object.fromEntries(Object.entries(HTTP_ERRORS).map(([code, e]) => [code, { status: e.status, retry: e.retry }]));
    expect(Object.fromEntries(documented)).toEqual(inCode);
  });
});
