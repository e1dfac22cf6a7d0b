-- What the bot keeps with a conversation between turns, written in the same
-- transaction as the turn's messages: the hand-over trigger counters since
-- the last hand-over, and the power-up waiting for an answer (both JSON).
-- A turn then reads neither the transcript nor another table.
ALTER TABLE conversations ADD COLUMN bot_counters TEXT;
ALTER TABLE conversations ADD COLUMN power_up TEXT;
