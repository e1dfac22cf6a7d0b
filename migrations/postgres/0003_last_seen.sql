-- When a staff member was last seen (an open inbox, any request): presence
-- "online" only counts while this is recent, so a closed browser stops
-- promising visitors a human.
ALTER TABLE users ADD COLUMN last_seen_at BIGINT;
