/** Secrets used only by the Workers-pool tests. */
export const TEST_BINDINGS = {
  JWT_SECRET: "test-jwt-secret-0123456789abcdef0123456789",
  INGEST_SECRETS: "test-ingest-secret-new-0123456789abcdef,test-ingest-secret-old-0123456789abcdef",
  ADMIN_TOKEN: "test-admin-token-0123456789",
  // sha256("test-publish-key") for every channel; sha256("test-orders-key") limited to orders.* and audit
  PUBLISH_KEY_HASHES:
    "b9f9141087986c30f1789065c5bb2a63e1523f7978e78a70ad948db77ebbaba8,ac3900eefe805b4a79f96e98bfb0b380abb2683611c295b5338194243a6b164e=orders.*|audit",
  ALLOWED_ORIGINS: "https://app.example",
  HISTORY_MAX_EVENTS: "50",
  LOG_LEVEL: "error",
  // Channels report stats 10 times a second here (5 s in production) so tests wait little.
  STATS_ROLLUP_MS: "100",
  METRICS_TOP_CHANNELS: "1000",
  // Channels under tree.* use fan-out objects of 2 sockets each.
  FANOUT_CHANNELS: "tree.*",
  FANOUT_OBJECT_CAPACITY: "2",
  // Flow control at test scale: 16 KiB unacknowledged for over 200 ms closes a socket (1 MiB and 5 s in production).
  FLOW_SOCKET_BYTES: "16384",
  FLOW_OBJECT_BYTES: "65536",
  FLOW_GRACE_MS: "200",
  // Presence at test scale: 50 ms batches, 400 ms grace, 5 listed members (250 ms, 5 s, 100 in production).
  PRESENCE_CHANNELS: "room.*,tree.room.*",
  PRESENCE_BATCH_MS: "50",
  PRESENCE_GRACE_MS: "400",
  PRESENCE_MAX_MEMBERS: "5",
  PRESENCE_CLAIMS: "role,name",
  // One object takes 45 sockets here (30,000 in production, under the platform's 32,768).
  MAX_SOCKETS_PER_OBJECT: "45",
  // Ingest into this channel fails inside the object's storage transaction (partial-failure tests).
  TEST_FAIL_CHANNELS: "fail.always,tree.handoff-fails|fanout|local|0",
} as const;
