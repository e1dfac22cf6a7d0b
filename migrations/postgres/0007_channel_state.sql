-- What a channel keeps for itself across restarts, by key: the email
-- channel's IMAP cursor (UIDVALIDITY and last UID per mailbox), which
-- conversation a Message-ID belongs to, a thread's subject and references.

CREATE TABLE channel_state (
    channel    TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (channel, key)
);
