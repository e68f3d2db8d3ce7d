/**
 * zod helpers every boundary shares: one way to word validation problems, and
 * the configuration building blocks of the Worker and the relay.
 */
// A namespace import lets the bundler keep only what is used (`import { z }` pulls all of zod, locales included: ~450 KB minified).
import * as z from "zod";

type Issue = z.core.$ZodIssue;

/** `a.b: message; c: message`, at most `max` issues; `root` names an issue on the whole value. */
export function formatIssues(issues: readonly Issue[], opts: { root?: string; max?: number } = {}): string {
  const root = opts.root ?? "body";
  const shown = issues.slice(0, opts.max ?? 5).map((i) => `${i.path.map(String).join(".") || root}: ${i.message}`);
  if (issues.length > shown.length) shown.push(`and ${issues.length - shown.length} more`);
  return shown.join("; ");
}

/** For configuration: every bad variable (the first path element) and the problems, never the values. */
export function describeIssues(issues: readonly Issue[]): { variables: string[]; details: string } {
  const variables = [...new Set(issues.map((i) => String(i.path[0] ?? "(root)")))];
  return { variables, details: formatIssues(issues, { root: "(root)", max: issues.length }) };
}

/** An integer environment variable with a default and bounds. */
export const intVar = (def: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(def);

/** A Postgres connection URL (the relay and db:migrate read the same variable the same way). */
export const PostgresUrl = z.string().regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL (postgres://user:password@host:port/database)");

export const LogLevel = z.enum(["debug", "info", "warn", "error"]);

/**
 * Reads the variables a schema names from an environment object; blank
 * strings count as unset, so an empty line in .dev.vars or the shell does not
 * fail a length check.
 */
export function pickVars(shape: Record<string, unknown>, env: Record<string, unknown>): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(shape)) {
    const v = env[key];
    if (v === undefined || (typeof v === "string" && v.trim() === "")) continue;
    raw[key] = v;
  }
  return raw;
}
