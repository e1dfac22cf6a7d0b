//! Post-hand-over actions (seed 002): `[[bot.handover.actions]]`, run in
//! order after each hand-over. Each has a time limit; each run is recorded
//! (`GET /api/v1/conversations/{id}/actions`), and a failing one is logged
//! and skipped: it never breaks the conversation or the actions after it.

use crate::config::{ActionConfig, AssignMode};
use crate::routing::Assigned;
use crate::{Error, Result, Runtime};
use baton_model::routing::Assignment;
use baton_model::wire::ConversationView;
use baton_model::{Role, Timestamp};
use std::time::Duration;
use tracing::warn;

impl Runtime {
    /// Runs the bot's actions for the hand-over that just happened.
    pub(crate) async fn run_actions(&self, conversation_id: &str) {
        let Ok(conv) = self.conversation(conversation_id).await else {
            return;
        };
        let bot = self.bot_config(&conv.bot_id);
        let at = conv
            .state
            .handover
            .as_ref()
            .map_or_else(|| self.now(), |h| h.at);
        let listed: Vec<(usize, String)> = bot
            .handover
            .actions
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a {
                ActionConfig::Plugin { plugin } => Some((i, plugin.clone())),
                _ => None,
            })
            .collect();
        self.queue_plugin_actions(&conv, &listed).await;
        for (position, action) in bot.handover.actions.iter().enumerate() {
            if matches!(action, ActionConfig::Plugin { .. }) {
                // Queued above; its run is recorded when the queue gets to it.
                continue;
            }
            let limit = bot.handover.action_timeout;
            let outcome = tokio::time::timeout(limit, self.run_action(conversation_id, action, at))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Invalid(format!(
                        "timed out after {} ms",
                        limit.as_millis()
                    )))
                });
            let (ok, detail) = match outcome {
                Ok(detail) => (true, detail),
                Err(e) => {
                    warn!(%conversation_id, action = action.name(), error = %e, "post-hand-over action failed");
                    (false, e.to_string())
                }
            };
            let recorded = self
                .store()
                .record_action_run(
                    conversation_id,
                    position as i64,
                    action.name(),
                    ok,
                    &detail,
                    self.now(),
                )
                .await;
            if let Err(e) = recorded {
                warn!(%conversation_id, error = %e, "cannot record an action run");
            }
        }
    }

    async fn staff_by_email(&self, email: &str) -> Result<baton_store::User> {
        self.store()
            .user_by_email(email)
            .await?
            .ok_or_else(|| Error::Invalid(format!("no staff member has the email `{email}`")))
    }

    /// One action; returns what it did, for the run log.
    async fn run_action(
        &self,
        conversation_id: &str,
        action: &ActionConfig,
        at: Timestamp,
    ) -> Result<String> {
        let conv = self.conversation(conversation_id).await?;
        match action {
            ActionConfig::Assign {
                to: Some(email), ..
            } => {
                let user = self.staff_by_email(email).await?;
                if !user.role.may_respond() {
                    return Err(Error::Invalid(format!(
                        "{email} is a viewer and cannot take conversations"
                    )));
                }
                Ok(match self.assign_to(conversation_id, &user).await? {
                    Assigned::NoSeat => format!("{} has no room; left in the queue", user.name),
                    _ => format!("assigned to {}", user.name),
                })
            }
            ActionConfig::Assign {
                to: None,
                department,
                mode,
            } => {
                let department = department.clone().or(conv.state.department.clone());
                let topic = self.store().topic(conversation_id).await?;
                let mode = match mode {
                    AssignMode::RoundRobin => Assignment::RoundRobin,
                    AssignMode::LeastBusy => Assignment::LeastBusy,
                };
                match self
                    .pick_user(mode, department.as_deref(), topic.as_deref())
                    .await?
                {
                    Some(user) => Ok(match self.assign_to(conversation_id, &user).await? {
                        Assigned::NoSeat => {
                            format!("{} has no room any more; left in the queue", user.name)
                        }
                        _ => format!("assigned to {}", user.name),
                    }),
                    None => Ok("nobody online has room; left in the queue".to_owned()),
                }
            }
            ActionConfig::Task {
                title,
                description,
                assignee,
                due,
            } => {
                let assignee_id = match assignee {
                    Some(email) => Some(self.staff_by_email(email).await?.id),
                    None => conv.state.assignee.as_ref().map(|a| a.id.clone()),
                };
                let who = contact_label(&conv);
                let reason = conv
                    .state
                    .handover
                    .as_ref()
                    .map_or("hand-over".to_owned(), |h| h.reason.to_string());
                let title = title
                    .clone()
                    .unwrap_or_else(|| format!("Follow up with {who} ({reason})"));
                let due_at = at.plus_millis(millis(*due));
                let task = self
                    .store()
                    .create_task(
                        conversation_id,
                        &title,
                        description,
                        assignee_id.as_deref(),
                        due_at,
                        self.now(),
                    )
                    .await?;
                if let Some(id) = &assignee_id
                    && let Some(user) = self.store().user(id).await?
                    && user.notify_task
                {
                    self.store()
                        .create_notification(
                            id,
                            "task",
                            Some(conversation_id),
                            Some(&task.id),
                            &format!("New task: {title}"),
                            self.now(),
                        )
                        .await?;
                }
                Ok(format!("task `{title}` due {due_at}"))
            }
            ActionConfig::Notify { to } => {
                let recipients = match (to, &conv.state.assignee) {
                    (Some(email), _) => vec![self.staff_by_email(email).await?],
                    (None, Some(a)) => self.store().user(&a.id).await?.into_iter().collect(),
                    (None, None) => self
                        .store()
                        .list_users()
                        .await?
                        .into_iter()
                        .filter(|u| u.role == Role::Owner)
                        .collect(),
                };
                let reason = conv
                    .state
                    .handover
                    .as_ref()
                    .map_or("manual".to_owned(), |h| h.reason.to_string());
                let text = format!(
                    "{} needs a human ({})",
                    contact_label(&conv),
                    reason.replace('_', " ")
                );
                for user in &recipients {
                    self.store()
                        .create_notification(
                            &user.id,
                            "escalated",
                            Some(conversation_id),
                            None,
                            &text,
                            self.now(),
                        )
                        .await?;
                }
                let names: Vec<&str> = recipients.iter().map(|u| u.email.as_str()).collect();
                Ok(format!("notified {} in the inbox", names.join(", ")))
            }
            ActionConfig::ClosingMessage { text } => {
                let bot = self.bot_config(&conv.bot_id);
                let text = text
                    .clone()
                    .unwrap_or_else(|| bot.handover.closing_message.clone());
                self.system_message(conversation_id, text).await?;
                Ok("closing message sent".to_owned())
            }
            ActionConfig::PauseBot { duration } => {
                let until = at.plus_millis(millis(*duration));
                self.pause_bot_until(conversation_id, until).await?;
                Ok(format!("bot paused until {until}"))
            }
            ActionConfig::Tags { tags } => {
                let mut all = conv.tags.clone();
                all.extend(tags.iter().cloned());
                let done = self.set_tags(conversation_id, &all).await?;
                Ok(format!("tags now {}", done.tags.join(", ")))
            }
            ActionConfig::Plugin { plugin } => Ok(format!("plugin `{plugin}` queued")),
            ActionConfig::Webhook { url, secret } => {
                let body = serde_json::json!({
                    "type": "handover.action",
                    "created_at": self.now(),
                    "data": {"conversation": ConversationView::from(&conv)},
                })
                .to_string();
                if !self.outbound_policy().allows_literal(url) {
                    return Err(Error::Invalid(format!(
                        "webhook {}: {}",
                        redact_url(url),
                        crate::outbound::REFUSED
                    )));
                }
                let Some(http) = self.webhook_http() else {
                    return Err(Error::Invalid(
                        "webhook: no HTTP client (see the start-up log)".into(),
                    ));
                };
                let mut request = http.post(url).header("content-type", "application/json");
                if let Some(secret) = secret {
                    let t = self.now().millis() / 1000;
                    request = request.header(
                        "Baton-Signature",
                        crate::webhooks::signature_header(secret, t, &body),
                    );
                }
                let response = request.body(body).send().await.map_err(|e| {
                    let why = if crate::outbound::is_refused(&e) {
                        crate::outbound::REFUSED.to_owned()
                    } else {
                        e.without_url().to_string()
                    };
                    Error::Invalid(format!("webhook {}: {why}", redact_url(url)))
                })?;
                let status = response.status();
                if status.is_success() {
                    Ok(format!("webhook answered {}", status.as_u16()))
                } else {
                    Err(Error::Invalid(format!(
                        "webhook {} answered {}",
                        redact_url(url),
                        status.as_u16()
                    )))
                }
            }
        }
    }
}

/// A URL as the action log shows it: scheme, host and path, without the
/// query string (which may carry a token).
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(unparsable url)".to_owned(),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn contact_label(conv: &baton_model::Conversation) -> String {
    conv.contact
        .name
        .clone()
        .or(conv.contact.email.clone())
        .unwrap_or_else(|| "A visitor".to_owned())
}
