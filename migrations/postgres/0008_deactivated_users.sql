-- A removed staff member is deactivated, not deleted: their name stays on
-- the conversations and messages they handled, and their sessions and API
-- tokens are deleted with the deactivation.
ALTER TABLE users ADD COLUMN deactivated_at BIGINT;
