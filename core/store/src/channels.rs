//! What channels keep in the database: a console's link between a
//! conversation and the external object that stands for it (the Slack
//! message posted for an escalation), and the lease that lets one node of
//! several run a channel's singleton work (Telegram polling, the Discord
//! gateway, the Slack console), and a channel's own keyed state (the email
//! channel's IMAP cursor and thread bookkeeping).

use crate::db::query;
use crate::{Result, Store};
use baton_model::Timestamp;

/// A table of text values keyed by (owner, key): a plugin's key-value store
/// (`plugin_kv`) and a channel's state (`channel_state`). The names are
/// constants, never input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyedTable {
    name: &'static str,
    owner: &'static str,
}

impl KeyedTable {
    pub(crate) const PLUGIN_KV: Self = Self {
        name: "plugin_kv",
        owner: "plugin_id",
    };
    pub(crate) const CHANNEL_STATE: Self = Self {
        name: "channel_state",
        owner: "channel",
    };
}

impl Store {
    /// Links a conversation to an external object on a console. Linking the
    /// same pair again is a no-op; a conversation has one link per console.
    pub async fn link(
        &self,
        console: &str,
        conversation_id: &str,
        external: &str,
        now: Timestamp,
    ) -> Result<()> {
        query(
            "INSERT INTO channel_links (console, external, conversation_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (console, external) DO NOTHING",
        )
        .bind(console)
        .bind(external)
        .bind(conversation_id)
        .bind(now.millis())
        .execute(self)
        .await?;
        Ok(())
    }

    pub async fn linked_conversation(
        &self,
        console: &str,
        external: &str,
    ) -> Result<Option<String>> {
        let row =
            query("SELECT conversation_id FROM channel_links WHERE console = $1 AND external = $2")
                .bind(console)
                .bind(external)
                .fetch_optional(self)
                .await?;
        row.map(|r| r.try_get("conversation_id")).transpose()
    }

    pub async fn conversation_link(
        &self,
        console: &str,
        conversation_id: &str,
    ) -> Result<Option<String>> {
        let row =
            query("SELECT external FROM channel_links WHERE console = $1 AND conversation_id = $2")
                .bind(console)
                .bind(conversation_id)
                .fetch_optional(self)
                .await?;
        row.map(|r| r.try_get("external")).transpose()
    }

    /// A channel's stored value under `key`.
    pub async fn channel_state(&self, channel: &str, key: &str) -> Result<Option<String>> {
        self.keyed_get(KeyedTable::CHANNEL_STATE, channel, key)
            .await
    }

    /// Stores (or replaces) a channel's value under `key`.
    pub async fn set_channel_state(
        &self,
        channel: &str,
        key: &str,
        value: &str,
        now: Timestamp,
    ) -> Result<()> {
        self.keyed_set(KeyedTable::CHANNEL_STATE, channel, key, value, now)
            .await
    }

    /// Reads `value` of (`owner`, `key`) in a keyed table.
    pub(crate) async fn keyed_get(
        &self,
        table: KeyedTable,
        owner: &str,
        key: &str,
    ) -> Result<Option<String>> {
        let sql = format!(
            "SELECT value FROM {} WHERE {} = $1 AND key = $2",
            table.name, table.owner
        );
        let row = query(sql)
            .bind(owner)
            .bind(key)
            .fetch_optional(self)
            .await?;
        row.map(|r| r.try_get("value")).transpose()
    }

    /// Stores (or replaces) `value` of (`owner`, `key`) in a keyed table.
    pub(crate) async fn keyed_set(
        &self,
        table: KeyedTable,
        owner: &str,
        key: &str,
        value: &str,
        now: Timestamp,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {name} ({owner}, key, value, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT ({owner}, key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at",
            name = table.name,
            owner = table.owner
        );
        query(sql)
            .bind(owner)
            .bind(key)
            .bind(value)
            .bind(now.millis())
            .execute(self)
            .await?;
        Ok(())
    }

    /// Takes (or takes again) the lease on singleton `work` for node `me`:
    /// true when `me` holds it now. It is free when nobody holds it, when
    /// `me` already does, or when its holder has neither taken it again nor
    /// beaten its heartbeat since `alive`.
    pub async fn take_singleton(
        &self,
        work: &str,
        me: &str,
        now: Timestamp,
        alive: Timestamp,
    ) -> Result<bool> {
        let row = query(
            "INSERT INTO singletons (name, node_id, taken_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET node_id = excluded.node_id, taken_at = excluded.taken_at \
             WHERE singletons.node_id = excluded.node_id OR singletons.taken_at < $4 \
             OR singletons.node_id NOT IN (SELECT id FROM nodes WHERE heartbeat_at >= $4) \
             RETURNING node_id",
        )
        .bind(work)
        .bind(me)
        .bind(now.millis())
        .bind(alive.millis())
        .fetch_optional(self)
        .await?;
        Ok(row.is_some())
    }

    /// Lets go of singleton `work` if `me` holds it.
    pub async fn release_singleton(&self, work: &str, me: &str) -> Result<()> {
        query("DELETE FROM singletons WHERE name = $1 AND node_id = $2")
            .bind(work)
            .bind(me)
            .execute(self)
            .await?;
        Ok(())
    }

    /// Who holds singleton `work`, if anyone (for tests and diagnostics).
    pub async fn singleton_holder(&self, work: &str) -> Result<Option<String>> {
        let row = query("SELECT node_id FROM singletons WHERE name = $1")
            .bind(work)
            .fetch_optional(self)
            .await?;
        row.map(|r| r.try_get("node_id")).transpose()
    }
}
