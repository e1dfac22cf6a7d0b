//! Bot settings changed at run time: the admin's changes are kept as a JSON
//! patch per bot over `baton.toml`, so a later edit of the file still shows
//! through for every field the admin never touched.

use crate::config::BotConfig;
use crate::{Error, Result, Runtime};
use serde_json::Value;
use tracing::warn;

/// Merges `patch` into `target`: objects key by key, anything else replaced.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// `base` with `patch` on top, checked against the settings' shape.
pub fn patched(base: &BotConfig, patch: &Value) -> Result<BotConfig> {
    let mut value = serde_json::to_value(base)
        .map_err(|e| Error::Invalid(format!("cannot represent bot settings: {e}")))?;
    merge(&mut value, patch);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Error::Invalid(format!("invalid bot settings: {inner}"))
        } else {
            Error::Invalid(format!("invalid bot settings: {path}: {inner}"))
        }
    })
}

/// How often a node rereads the bot settings saved by any node.
const SETTINGS_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

impl Runtime {
    /// Applies the saved admin changes on top of `baton.toml`, and the
    /// knowledge-base edits on top of the knowledge folders. A saved patch
    /// that no longer fits (a setting was renamed) is reported and skipped.
    pub async fn load_bot_settings(&self) -> Result<()> {
        self.apply_saved_settings(true).await?;
        self.load_knowledge_edits().await
    }

    /// Follows the bot settings saved on any node: every few seconds, so a
    /// change made on another node is live here within that time (on the
    /// node that saved it, it is live at once).
    pub(crate) async fn follow_bot_settings(self) {
        loop {
            tokio::time::sleep(SETTINGS_PERIOD).await;
            if let Err(e) = self.apply_saved_settings(false).await {
                warn!(error = %e, "cannot read the saved bot settings");
            }
        }
    }

    /// Puts the saved patches over `baton.toml`; `report` logs the ones that
    /// no longer apply (at start; the periodic reread stays quiet).
    async fn apply_saved_settings(&self, report: bool) -> Result<()> {
        let warn_once = |bot_id: &str, what: &str| {
            if report {
                warn!(%bot_id, "{what}; ignored");
            }
        };
        // A save on this node while the rows were read wins over what was read.
        let generation = self.settings_generation();
        let saved = self.store().bot_settings().await?;
        if self.settings_generation() != generation {
            return Ok(());
        }
        for (bot_id, json) in saved {
            let Some(base) = self.file_bot_config(&bot_id) else {
                warn_once(
                    &bot_id,
                    "saved settings for a bot that baton.toml no longer has",
                );
                continue;
            };
            let patch: Value = match serde_json::from_str(&json) {
                Ok(p) => p,
                Err(e) => {
                    warn_once(&bot_id, &format!("saved bot settings are not JSON ({e})"));
                    continue;
                }
            };
            match patched(&base, &patch).and_then(|bot| {
                self.config().check_bot(&bot).map_err(Error::Invalid)?;
                Ok(bot)
            }) {
                Ok(bot) => self.set_bot_config(&bot_id, bot),
                Err(e) => warn_once(
                    &bot_id,
                    &format!("saved bot settings no longer apply ({e})"),
                ),
            }
        }
        Ok(())
    }

    /// Changes a bot's settings: `patch` is a partial settings object, merged
    /// into what was saved before, checked, stored, and then live.
    pub async fn update_bot(&self, bot_id: &str, patch: &Value) -> Result<BotConfig> {
        let base = self.file_bot_config(bot_id).ok_or(Error::NotFound("bot"))?;
        if !patch.is_object() {
            return Err(Error::Invalid("bot settings must be a JSON object".into()));
        }
        let mut saved = self
            .store()
            .bot_settings()
            .await?
            .into_iter()
            .find(|(id, _)| id == bot_id)
            .and_then(|(_, json)| serde_json::from_str::<Value>(&json).ok())
            .unwrap_or_else(|| Value::Object(Default::default()));
        merge(&mut saved, patch);
        let bot = patched(&base, &saved)?;
        self.config().check_bot(&bot).map_err(Error::Invalid)?;
        self.check_action_staff(&bot).await?;
        self.check_action_urls(&base, &bot).await?;
        // Before and after the save: a reread that saw the old rows drops them.
        self.settings_changed();
        self.store()
            .save_bot_settings(bot_id, &saved.to_string(), self.now())
            .await?;
        self.settings_changed();
        self.set_bot_config(bot_id, bot.clone());
        Ok(bot)
    }

    /// The staff members the actions name must exist, or every hand-over
    /// would record the same failure.
    async fn check_action_staff(&self, bot: &BotConfig) -> Result<()> {
        use crate::config::ActionConfig;
        for (i, action) in bot.handover.actions.iter().enumerate() {
            let email = match action {
                ActionConfig::Assign { to: Some(e), .. }
                | ActionConfig::Task {
                    assignee: Some(e), ..
                }
                | ActionConfig::Notify { to: Some(e) } => e,
                _ => continue,
            };
            if self.store().user_by_email(email).await?.is_none() {
                return Err(Error::Invalid(format!(
                    "handover.actions[{i}] ({}): no staff member has the email `{email}`",
                    action.name()
                )));
            }
        }
        Ok(())
    }

    /// Webhook URLs entered here must pass the outbound policy; those that
    /// come from `baton.toml` are the operator's and are checked only when
    /// they are called.
    async fn check_action_urls(&self, file: &BotConfig, bot: &BotConfig) -> Result<()> {
        use crate::config::ActionConfig;
        let from_file: Vec<&str> = file
            .handover
            .actions
            .iter()
            .filter_map(|a| match a {
                ActionConfig::Webhook { url, .. } => Some(url.as_str()),
                _ => None,
            })
            .collect();
        for (i, action) in bot.handover.actions.iter().enumerate() {
            if let ActionConfig::Webhook { url, .. } = action
                && !from_file.contains(&url.as_str())
            {
                self.outbound_policy()
                    .check_url(url)
                    .await
                    .map_err(|e| Error::Invalid(format!("handover.actions[{i}] (webhook): {e}")))?;
            }
        }
        Ok(())
    }

    fn file_bot_config(&self, bot_id: &str) -> Option<BotConfig> {
        self.config().bot(bot_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let base = BotConfig::default();
        let bot = patched(
            &base,
            &json!({"name": "Ada", "handover": {"request_button_after": 3}}),
        )
        .unwrap();
        assert_eq!(bot.name, "Ada");
        assert_eq!(bot.handover.request_button_after, 3);
        assert_eq!(bot.greeting, base.greeting);
        assert_eq!(bot.handover.online_message, base.handover.online_message);
    }

    #[test]
    fn a_patch_of_the_wrong_shape_is_refused() {
        let base = BotConfig::default();
        assert!(patched(&base, &json!({"handover": {"enabled": "yes"}})).is_err());
        assert!(patched(&base, &json!({"no_such_setting": 1})).is_err());
    }

    #[test]
    fn durations_survive_the_round_trip() {
        let base = BotConfig::default();
        let bot = patched(&base, &json!({"handover": {"pause_bot_for": "15m"}})).unwrap();
        assert_eq!(bot.handover.pause_bot_for.as_secs(), 900);
        let again = patched(&bot, &json!({})).unwrap();
        assert_eq!(again.handover.pause_bot_for.as_secs(), 900);
    }
}
