//! What plugins keep in the database: each plugin's key-value store, the
//! admin's on/off switches, the durable queue of plugin actions, and the
//! power-up a conversation is in the middle of.

use crate::channels::KeyedTable;
use crate::db::query;
use crate::{Result, Store, new_id};
use baton_model::Timestamp;

/// One plugin action to run (or that ran) for one hand-over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginJob {
    pub id: String,
    pub plugin_id: String,
    pub conversation_id: String,
    pub idempotency_key: String,
    pub reason: String,
    pub position: i64,
    pub attempts: i64,
    pub status: String,
    pub next_at: Timestamp,
    pub last_error: Option<String>,
}

const JOB_COLUMNS: &str = "id, plugin_id, conversation_id, idempotency_key, reason, position, \
                           attempts, status, next_at, last_error";

fn job(row: &crate::db::Row) -> Result<PluginJob> {
    Ok(PluginJob {
        id: row.try_get("id")?,
        plugin_id: row.try_get("plugin_id")?,
        conversation_id: row.try_get("conversation_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        reason: row.try_get("reason")?,
        position: row.try_get("position")?,
        attempts: row.try_get("attempts")?,
        status: row.try_get("status")?,
        next_at: Timestamp::from_millis(row.try_get("next_at")?),
        last_error: row.try_get("last_error")?,
    })
}

impl Store {
    pub async fn kv_get(&self, plugin_id: &str, key: &str) -> Result<Option<String>> {
        self.keyed_get(KeyedTable::PLUGIN_KV, plugin_id, key).await
    }

    pub async fn kv_set(
        &self,
        plugin_id: &str,
        key: &str,
        value: &str,
        now: Timestamp,
    ) -> Result<()> {
        self.keyed_set(KeyedTable::PLUGIN_KV, plugin_id, key, value, now)
            .await
    }

    pub async fn kv_delete(&self, plugin_id: &str, key: &str) -> Result<()> {
        query("DELETE FROM plugin_kv WHERE plugin_id = $1 AND key = $2")
            .bind(plugin_id)
            .bind(key)
            .execute(self)
            .await?;
        Ok(())
    }

    /// Plugins an admin switched off.
    pub async fn plugins_switched_off(&self) -> Result<Vec<String>> {
        let rows = query("SELECT plugin_id FROM plugin_switches WHERE enabled = 0")
            .fetch_all(self)
            .await?;
        rows.iter().map(|r| r.try_get("plugin_id")).collect()
    }

    pub async fn switch_plugin(
        &self,
        plugin_id: &str,
        enabled: bool,
        now: Timestamp,
    ) -> Result<()> {
        query(
            "INSERT INTO plugin_switches (plugin_id, enabled, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (plugin_id) DO UPDATE SET enabled = excluded.enabled, \
             updated_at = excluded.updated_at",
        )
        .bind(plugin_id)
        .bind(i64::from(enabled))
        .bind(now.millis())
        .execute(self)
        .await?;
        Ok(())
    }

    /// Queues a plugin action; a second call with the same key is a no-op
    /// (returns `false`).
    pub async fn enqueue_plugin_job(
        &self,
        plugin_id: &str,
        conversation_id: &str,
        idempotency_key: &str,
        reason: &str,
        position: i64,
        now: Timestamp,
    ) -> Result<bool> {
        let done = query(
            "INSERT INTO plugin_jobs (id, plugin_id, conversation_id, idempotency_key, reason, \
             position, attempts, status, next_at, last_error, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, 'queued', $7, NULL, $7, $7) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(new_id())
        .bind(plugin_id)
        .bind(conversation_id)
        .bind(idempotency_key)
        .bind(reason)
        .bind(position)
        .bind(now.millis())
        .execute(self)
        .await?;
        Ok(done > 0)
    }

    /// Claims up to `limit` due jobs: they become `running` until
    /// [`Store::finish_plugin_job`]. A job left `running` by a crashed node
    /// is due again after `stale_ms`.
    pub async fn claim_plugin_jobs(
        &self,
        now: Timestamp,
        limit: i64,
        stale_ms: i64,
    ) -> Result<Vec<PluginJob>> {
        let rows = query(format!(
            "SELECT {JOB_COLUMNS} FROM plugin_jobs WHERE (status = 'queued' AND next_at <= $1) \
             OR (status = 'running' AND next_at <= $2) ORDER BY next_at, position LIMIT $3"
        ))
        .bind(now.millis())
        .bind(now.millis() - stale_ms)
        .bind(limit)
        .fetch_all(self)
        .await?;
        let mut claimed = vec![];
        for row in &rows {
            let mut j = job(row)?;
            // Compare-and-set on the row as read: another node may claim it first.
            let won = query(
                "UPDATE plugin_jobs SET status = 'running', attempts = attempts + 1, \
                 next_at = $1, updated_at = $1 WHERE id = $2 AND status = $3 AND attempts = $4",
            )
            .bind(now.millis())
            .bind(&j.id)
            .bind(&j.status)
            .bind(j.attempts)
            .execute(self)
            .await?;
            if won == 1 {
                j.attempts += 1;
                j.status = "running".into();
                claimed.push(j);
            }
        }
        Ok(claimed)
    }

    /// Queues a job again at once that this node claimed (with `attempts`
    /// counted) and cut short while stopping; the cut attempt is not counted.
    /// False when the job was recorded or claimed anew meanwhile.
    pub async fn give_back_plugin_job(
        &self,
        id: &str,
        attempts: i64,
        now: Timestamp,
    ) -> Result<bool> {
        let done = query(
            "UPDATE plugin_jobs SET status = 'queued', attempts = attempts - 1, next_at = $1, \
             updated_at = $1 WHERE id = $2 AND status = 'running' AND attempts = $3",
        )
        .bind(now.millis())
        .bind(id)
        .bind(attempts)
        .execute(self)
        .await?;
        Ok(done == 1)
    }

    /// Records how a claimed job went: `done`, `failed`, or `queued` again
    /// at `next_at` for a retry.
    pub async fn finish_plugin_job(
        &self,
        id: &str,
        status: &str,
        next_at: Timestamp,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        query(
            "UPDATE plugin_jobs SET status = $1, next_at = $2, last_error = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(status)
        .bind(next_at.millis())
        .bind(error)
        .bind(now.millis())
        .bind(id)
        .execute(self)
        .await?;
        Ok(())
    }

    pub async fn plugin_jobs(&self, conversation_id: &str) -> Result<Vec<PluginJob>> {
        let rows = query(format!(
            "SELECT {JOB_COLUMNS} FROM plugin_jobs WHERE conversation_id = $1 ORDER BY created_at, position"
        ))
        .bind(conversation_id)
        .fetch_all(self)
        .await?;
        rows.iter().map(job).collect()
    }
}
