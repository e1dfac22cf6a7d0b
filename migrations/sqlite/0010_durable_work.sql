-- Work that must survive a crash.
--
-- `nodes`: every running `baton serve` process, with the last instant it
-- said it was alive. Work leased by a node that has stopped saying so
-- (deliveries, a bot turn under way) is taken over by another node.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- The delivery outbox: one row per message and platform channel, written in
-- the transaction that writes the message. Rows of one conversation and
-- channel are sent in `id` order, one at a time.
CREATE TABLE channel_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    channel TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    leased_by TEXT,
    last_error TEXT,
    platform_id TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX channel_deliveries_pending ON channel_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX channel_deliveries_thread ON channel_deliveries (conversation_id, channel, id);

-- The visitor message the bot is due to answer, and the node whose turn it
-- is: a turn cut short by a crash is found and answered once.
ALTER TABLE conversations ADD COLUMN turn_seq BIGINT;
ALTER TABLE conversations ADD COLUMN turn_node TEXT;
ALTER TABLE conversations ADD COLUMN turn_at BIGINT;
CREATE INDEX conversations_turn_due ON conversations (turn_at) WHERE turn_seq IS NOT NULL;
