//! What channels keep in the database: a console's link between a
//! conversation and the external object that stands for it (the Slack
//! message posted for an escalation), and the lock that lets one node of
//! several run a channel's singleton work (Telegram polling, the Discord
//! gateway, the Slack console), and a channel's own keyed state (the email
//! channel's IMAP cursor and thread bookkeeping).

use crate::db::query;
use crate::{Backend, Result, Store};
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

/// Held while this node runs a piece of singleton work; dropping it lets
/// another node take over.
#[derive(Debug)]
pub struct SingletonGuard {
    // The PostgreSQL session holding the advisory lock; it is released when
    // the connection closes.
    _conn: Option<sqlx::postgres::PgConnection>,
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

    /// Tries to become the one node that runs `work`. On PostgreSQL this is a
    /// session advisory lock on its own connection; SQLite has one node.
    pub async fn try_singleton(&self, work: &str) -> Result<Option<SingletonGuard>> {
        if self.backend() == Backend::Sqlite {
            return Ok(Some(SingletonGuard { _conn: None }));
        }
        use sqlx::Connection;
        let mut conn = sqlx::postgres::PgConnection::connect(self.url()).await?;
        let key = lock_key(work);
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then_some(SingletonGuard { _conn: Some(conn) }))
    }
}

/// A stable 64-bit key for a name (FNV-1a), the same on every node.
fn lock_key(work: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("baton:{work}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}
