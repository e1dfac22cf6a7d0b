-- Singleton work (a channel's receive loop, a console's event follower) is
-- leased by a node, like a delivery: the holder takes its row again every
-- heartbeat, and the row is free once `taken_at` is older than the node
-- timeout or its node stops beating. Replaces the advisory lock, which a
-- hung process held for as long as its connection stayed open.
CREATE TABLE singletons (
    name TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    taken_at BIGINT NOT NULL
);
