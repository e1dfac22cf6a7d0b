-- Baton schema, SQLite dialect. Instants are BIGINT milliseconds since the
-- Unix epoch; flags are BIGINT 0/1; lists are JSON text. The PostgreSQL
-- migration mirrors this file column for column.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    presence      TEXT NOT NULL DEFAULT 'offline',
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);

CREATE TABLE contacts (
    id         TEXT PRIMARY KEY,
    name       TEXT,
    email      TEXT,
    phone      TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE contact_identities (
    channel     TEXT NOT NULL,
    external_id TEXT NOT NULL,
    contact_id  TEXT NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    PRIMARY KEY (channel, external_id)
);

CREATE TABLE conversations (
    id                   TEXT PRIMARY KEY,
    bot_id               TEXT NOT NULL,
    channel              TEXT NOT NULL,
    contact_id           TEXT NOT NULL REFERENCES contacts(id),
    -- The platform's key for the thread (a chat id, an email thread), for inbound routing.
    thread_key           TEXT,
    visitor_token_hash   TEXT UNIQUE,
    status               TEXT NOT NULL,
    assignee_id          TEXT REFERENCES users(id),
    department           TEXT,
    handover_reason      TEXT,
    handover_at          BIGINT,
    handover_by          TEXT,
    bot_paused_until     BIGINT,
    escalated_at         BIGINT,
    claimed_at           BIGINT,
    first_agent_reply_at BIGINT,
    resolved_at          BIGINT,
    tags                 TEXT NOT NULL DEFAULT '[]',
    unread               BIGINT NOT NULL DEFAULT 0,
    last_seq             BIGINT NOT NULL DEFAULT 0,
    version              BIGINT NOT NULL DEFAULT 0,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX conversations_status ON conversations (status, updated_at);
CREATE INDEX conversations_assignee ON conversations (assignee_id);
CREATE UNIQUE INDEX conversations_thread ON conversations (channel, thread_key);

CREATE TABLE messages (
    id                 TEXT PRIMARY KEY,
    conversation_id    TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq                BIGINT NOT NULL,
    sender             TEXT NOT NULL,
    author_id          TEXT,
    author_name        TEXT,
    text               TEXT NOT NULL,
    internal           BIGINT NOT NULL DEFAULT 0,
    actions            TEXT NOT NULL DEFAULT '[]',
    attachments        TEXT NOT NULL DEFAULT '[]',
    client_id          TEXT,
    channel_message_id TEXT,
    created_at         BIGINT NOT NULL,
    UNIQUE (conversation_id, seq)
);
CREATE UNIQUE INDEX messages_client_id ON messages (conversation_id, client_id);
CREATE UNIQUE INDEX messages_channel_message_id ON messages (conversation_id, channel_message_id);

-- The durable outbox: one row per lifecycle event, written in the same
-- transaction as the change it describes.
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    body            TEXT NOT NULL
);
CREATE INDEX events_type_time ON events (type, created_at);

CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secret     TEXT NOT NULL,
    active     BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT,
    created_at      BIGINT NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
