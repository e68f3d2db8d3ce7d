/**
 * Lays out an image's file system the way its Dockerfile says, without a
 * Docker engine (none runs here): each stage gets a directory for its root;
 * WORKDIR, ENV, COPY (from the build context, filtered by .dockerignore, or
 * --from another stage), RUN (a shell in that directory) and USER, CMD and
 * HEALTHCHECK are read as written. The base image's own files are not there:
 * commands run with this machine's tools in their place.
 */
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { basename, join, relative } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Stage {
  name: string | undefined;
  root: string;
  workdir: string;
  env: Record<string, string>;
  user: string | undefined;
  cmd: string[] | undefined;
  healthcheck: string[] | undefined;
}

function instructions(text: string): { op: string; args: string }[] {
  const lines = text.replace(/\\\r?\n/g, " ").split(/\r?\n/);
  return lines
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return { op: op!.toUpperCase(), args: rest.join(" ") };
    });
}

/** `["a", "b"]` (exec form) or `a b` (shell form, run by sh -c). */
const command = (args: string): string[] => (args.startsWith("[") ? (JSON.parse(args) as string[]) : ["sh", "-c", args]);

function ignored(patterns: string[], path: string): boolean {
  return patterns.some((p) => {
    if (path === p || path.startsWith(`${p}/`)) return true;
    const re = new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")}(/|$)`);
    return re.test(path);
  });
}

export async function assembleImage(opts: { dockerfile: string; context: string; out: string; env?: Record<string, string> }): Promise<Stage> {
  const ignoreFile = join(opts.context, ".dockerignore");
  const patterns = existsSync(ignoreFile)
    ? readFileSync(ignoreFile, "utf8")
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l !== "" && !l.startsWith("#"))
    : [];
  const stages: Stage[] = [];
  let stage: Stage | undefined;
  for (const { op, args } of instructions(readFileSync(opts.dockerfile, "utf8"))) {
    if (op === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      stage = { name: m[2], root: join(opts.out, `stage-${stages.length}`), workdir: "/", env: {}, user: undefined, cmd: undefined, healthcheck: undefined };
      mkdirSync(stage.root, { recursive: true });
      stages.push(stage);
      continue;
    }
    if (!stage) throw new Error(`${op} before FROM`);
    const at = (p: string) => join(stage!.root, p.startsWith("/") ? p : join(stage!.workdir, p));
    switch (op) {
      case "WORKDIR":
        stage.workdir = args.startsWith("/") ? args : join(stage.workdir, args);
        mkdirSync(join(stage.root, stage.workdir), { recursive: true });
        break;
      case "ENV":
        for (const m of args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) stage.env[m[1]!] = m[2]!.replace(/^"|"$/g, "");
        break;
      case "COPY": {
        const words = args.split(/\s+/);
        const from = words[0]!.startsWith("--from=") ? words.shift()!.slice("--from=".length) : undefined;
        const dest = words.pop()!;
        const source = from ? stages.find((s) => s.name === from || String(stages.indexOf(s)) === from) : undefined;
        if (from && !source) throw new Error(`COPY --from=${from}: no such stage`);
        for (const src of words) {
          const abs = source ? join(source.root, src.startsWith("/") ? src : join(source.workdir, src)) : join(opts.context, src);
          const target = dest.endsWith("/") || words.length > 1 ? join(at(dest), basename(src)) : at(dest);
          const base = source ? source.root : opts.context;
          cpSync(abs, statSync(abs).isDirectory() ? target : target, {
            recursive: true,
            filter: (p) => source !== undefined || !ignored(patterns, relative(base, p)),
          });
        }
        break;
      }
      case "RUN": {
        const [file, ...rest] = command(args);
        await run(file!, rest, { cwd: join(stage.root, stage.workdir), env: { ...process.env, ...stage.env, ...opts.env }, maxBuffer: 64 * 1024 * 1024 });
        break;
      }
      case "USER":
        stage.user = args;
        break;
      case "CMD":
        stage.cmd = command(args);
        break;
      case "HEALTHCHECK": {
        const i = args.indexOf("CMD ");
        stage.healthcheck = command(args.slice(i + 4).trim());
        break;
      }
      default:
        break; // EXPOSE, STOPSIGNAL, LABEL: nothing to lay out
    }
  }
  return stages[stages.length - 1]!;
}
