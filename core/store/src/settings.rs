//! Settings that admins change at run time and that outlive a restart.

use crate::db::query;
use crate::{Result, Store};
use baton_model::Timestamp;

impl Store {
    /// Every bot's saved settings as `(bot id, JSON)`.
    pub async fn bot_settings(&self) -> Result<Vec<(String, String)>> {
        let rows = query("SELECT bot_id, settings FROM bot_settings ORDER BY bot_id")
            .fetch_all(self)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("bot_id")?, r.try_get("settings")?)))
            .collect()
    }

    /// Saves one bot's settings (JSON), replacing what was there.
    pub async fn save_bot_settings(&self, bot_id: &str, json: &str, now: Timestamp) -> Result<()> {
        query(
            "INSERT INTO bot_settings (bot_id, settings, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (bot_id) DO UPDATE SET settings = excluded.settings, \
             updated_at = excluded.updated_at",
        )
        .bind(bot_id)
        .bind(json)
        .bind(now.millis())
        .execute(self)
        .await?;
        Ok(())
    }
}
