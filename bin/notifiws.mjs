#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so `npx notifiws tail <channel>` works without a build step.
import { register } from "tsx/esm/api";
register();
await import("../client/cli.ts");
