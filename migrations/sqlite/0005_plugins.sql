-- WebAssembly plugins: each plugin's key-value store, the admin's
-- switches, the durable queue of post-hand-over plugin actions, and the
-- power-up a conversation is in the middle of.

CREATE TABLE plugin_kv (
    plugin_id  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (plugin_id, key)
);

CREATE TABLE plugin_switches (
    plugin_id  TEXT PRIMARY KEY,
    enabled    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE plugin_jobs (
    id              TEXT PRIMARY KEY,
    plugin_id       TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    -- The same on every retry of one hand-over's run of one plugin.
    idempotency_key TEXT NOT NULL UNIQUE,
    reason          TEXT NOT NULL,
    position        BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    -- queued, running, done or failed
    status          TEXT NOT NULL,
    next_at         BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX plugin_jobs_due ON plugin_jobs (status, next_at);

CREATE TABLE power_up_sessions (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
    plugin_id       TEXT NOT NULL,
    turn            BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
