-- Webhook deliveries are leased by a node, like channel deliveries: a
-- delivery leased by a node that stopped beating is free at once, not only
-- when its lease runs out. `lease_until` stays as the bound for a live node
-- whose attempt never got recorded.
ALTER TABLE webhook_deliveries ADD COLUMN leased_by TEXT;
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
