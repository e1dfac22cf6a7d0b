-- Issue 4: routing, the contact collector, post-hand-over actions, tasks,
-- notifications and knowledge-base edits. The PostgreSQL file mirrors it.

-- Routing: the departments a staff member works in, what they know best,
-- how many conversations they hold at once (0: no limit), when they were
-- last given one (round robin), and which notifications they want.
ALTER TABLE users ADD COLUMN departments TEXT NOT NULL DEFAULT '[]';
ALTER TABLE users ADD COLUMN expertise TEXT NOT NULL DEFAULT '[]';
ALTER TABLE users ADD COLUMN capacity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN last_assigned_at BIGINT;
ALTER TABLE users ADD COLUMN notify_assigned BIGINT NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN notify_task BIGINT NOT NULL DEFAULT 1;

-- What the conversation is about (an intent or knowledge-base entry id), for
-- expertise routing; and the contact collector's pending hand-over (JSON).
ALTER TABLE conversations ADD COLUMN topic TEXT;
ALTER TABLE conversations ADD COLUMN collecting TEXT;

CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    title           TEXT NOT NULL,
    description     TEXT NOT NULL,
    assignee_id     TEXT REFERENCES users(id) ON DELETE SET NULL,
    due_at          BIGINT NOT NULL,
    done            BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    done_at         BIGINT
);
CREATE INDEX tasks_assignee ON tasks (assignee_id, done, due_at);

CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    conversation_id TEXT,
    task_id         TEXT,
    text            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    read_at         BIGINT
);
CREATE INDEX notifications_user ON notifications (user_id, created_at);

-- One row per post-hand-over action run: what ran, and whether it worked.
CREATE TABLE action_runs (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position        BIGINT NOT NULL,
    action          TEXT NOT NULL,
    ok              BIGINT NOT NULL,
    detail          TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX action_runs_conversation ON action_runs (conversation_id, created_at);

-- Knowledge-base entries added, changed or removed through the API; they
-- sit on top of the bot's knowledge folder.
CREATE TABLE knowledge_entries (
    bot_id     TEXT NOT NULL,
    entry_id   TEXT NOT NULL,
    body       TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (bot_id, entry_id)
);
