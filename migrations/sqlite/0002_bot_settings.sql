-- Bot settings changed through the admin API; they override baton.toml per bot.
CREATE TABLE bot_settings (
    bot_id     TEXT PRIMARY KEY,
    settings   TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
