import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, presenceFrameBytes } from "../../shared/worker-config";

describe("Worker config", () => {
  it("applies documented defaults", () => {
    const c = loadConfig({ JWT_SECRET: "x".repeat(32), INGEST_SECRETS: "s".repeat(32) });
    expect(c).toMatchObject({ HISTORY_MAX_EVENTS: 1000, CLIENT_RATE_PER_SEC: 10, CLIENT_RATE_BURST: 20, ALLOWED_ORIGINS: [], PUBLISH_KEY_HASHES: [] });
  });

  it("names every bad variable in one error", () => {
    let err: unknown;
    try {
      loadConfig({ INGEST_SECRETS: "short", CLIENT_RATE_PER_SEC: "-1", JWT_JWKS_URL: "not a url" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variables.sort()).toEqual(["CLIENT_RATE_PER_SEC", "INGEST_SECRETS", "JWT_JWKS_URL"].sort());
    expect((err as Error).message).not.toContain("short");
  });
});

describe("Worker config: auth keys", () => {
  it("requires JWT_SECRET or JWT_JWKS_URL", () => {
    expect(() => loadConfig({ INGEST_SECRETS: "s".repeat(32) })).toThrow(/JWT_SECRET: set JWT_SECRET or JWT_JWKS_URL/);
  });
});

describe("Worker config: presence frames stay under the frame cap", () => {
  const base = { JWT_SECRET: "x".repeat(32), INGEST_SECRETS: "s".repeat(32) };
  it("accepts the defaults and refuses members × metadata that would not fit one frame, naming the variable", () => {
    expect(presenceFrameBytes(loadConfig(base))).toBeLessThan(loadConfig(base).MAX_FRAME_BYTES);
    expect(() => loadConfig({ ...base, PRESENCE_MAX_MEMBERS: "1000", PRESENCE_META_BYTES: "4096" })).toThrow(
      /PRESENCE_MAX_MEMBERS: a presence frame could reach \d+ bytes/,
    );
    expect(loadConfig({ ...base, PRESENCE_MAX_MEMBERS: "400", PRESENCE_META_BYTES: "64" }).PRESENCE_MAX_MEMBERS).toBe(400);
  });
});
