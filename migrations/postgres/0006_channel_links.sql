-- What a console (Slack) keeps about a conversation: the external object
-- that stands for it there (the channel and timestamp of the posted
-- message), found both ways.

CREATE TABLE channel_links (
    console         TEXT NOT NULL,
    external        TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (console, external)
);
CREATE UNIQUE INDEX channel_links_conversation ON channel_links (conversation_id, console);
