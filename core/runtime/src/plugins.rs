//! Plugins in the runtime: trigger plugins read each visitor message while
//! the bot holds a conversation, power-ups run when the visitor says one of
//! their phrases, when an LLM calls them as tools, or while one waits for an
//! answer, and action plugins run after a hand-over from a durable queue
//! with back-off. [`RuntimeApi`] serves their host calls.
//!
//! Invariant: a plugin never decides on its own whether the bot may speak.
//! What it says goes through the same gate as the bot's replies, and a
//! failing plugin is skipped: the conversation carries on without it.

use crate::bot::{BotMessage, BotReply, Tool};
use crate::{Error, Result, Runtime};
use async_trait::async_trait;
use baton_model::{AgentRef, Conversation, Reason, SenderKind, Timestamp};
use baton_plugins::{
    ContactInfo, ConversationInfo, Escalation, HostApi, HttpRequest, HttpResponse, MessageInfo,
    Outcome, Step,
};
use baton_store::NewMessage;

/// A power-up waiting for the visitor's answer, as kept with the conversation.
#[derive(serde::Serialize, serde::Deserialize)]
struct PowerUpSession {
    plugin_id: String,
    turn: i64,
}
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Plugin responses larger than this are cut (1 MiB).
const MAX_RESPONSE: usize = 1 << 20;
/// The first retry of a failed plugin action waits this long; each next one twice as long.
const RETRY_BASE_MS: i64 = 1_000;
const RETRY_MAX_MS: i64 = 5 * 60_000;
/// How long a stopping node lets plugin actions under way finish.
const STOP_GRACE: Duration = Duration::from_secs(2);

fn task_id(
    done: &std::result::Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) -> tokio::task::Id {
    match done {
        Ok((id, ())) => *id,
        Err(e) => e.id(),
    }
}

/// The conversation as plugins see it.
pub fn conversation_info(conv: &Conversation) -> ConversationInfo {
    ConversationInfo {
        id: conv.id.clone(),
        channel: conv.channel.to_string(),
        status: conv.state.status.to_string(),
        bot: conv.bot_id.clone(),
        department: conv.state.department.clone(),
        tags: conv.tags.clone(),
        contact: ContactInfo {
            id: conv.contact.id.clone(),
            name: conv.contact.name.clone(),
            email: conv.contact.email.clone(),
            phone: conv.contact.phone.clone(),
        },
    }
}

/// Whether the visitor's text says `phrase` (case and punctuation aside).
fn says(text: &str, phrase: &str) -> bool {
    let norm = |s: &str| -> String {
        let words: Vec<String> = s
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        format!(" {} ", words.join(" "))
    };
    let phrase = norm(phrase);
    phrase.trim() != "" && norm(text).contains(&phrase)
}

impl Runtime {
    fn plugin_api(&self) -> Arc<dyn HostApi> {
        Arc::new(RuntimeApi(self.clone()))
    }

    /// Power-ups offered to the bot as tools.
    pub(crate) fn plugin_tools(&self) -> Vec<Tool> {
        let Some(host) = self.plugins() else {
            return vec![];
        };
        host.power_ups()
            .into_iter()
            .map(|p| Tool {
                plugin: p.id,
                name: p.descriptor.name,
                description: p.descriptor.description,
                parameters: p.descriptor.parameters,
            })
            .collect()
    }

    /// A visitor's turn as plugins see it: a trigger's verdict, the answer
    /// to a power-up's question, or a power-up the visitor named. `None`
    /// when no plugin takes the turn and the bot should answer.
    pub(crate) async fn plugin_turn(
        &self,
        conv: &Conversation,
        text: &str,
    ) -> Result<Option<BotReply>> {
        let Some(host) = self.plugins() else {
            return Ok(None);
        };
        let settings = self.bot_config(&conv.bot_id);
        if settings.handover.enabled
            && let Some((id, escalation)) = host
                .trigger(self.plugin_api(), &conversation_info(conv), text)
                .await
        {
            info!(conversation_id = %conv.id, plugin = %id, "a trigger plugin hands over");
            let mut reply = self.plugin_escalation(conv, &id, escalation).await?;
            reply.power_up_session = Some(None);
            return Ok(Some(reply));
        }
        let power_ups = host.power_ups();
        if power_ups.is_empty() {
            return Ok(None);
        }
        let session = conv
            .memory
            .power_up
            .as_deref()
            .and_then(|s| serde_json::from_str::<PowerUpSession>(s).ok());
        if let Some(session) = session {
            let turn = u32::try_from(session.turn + 1).unwrap_or(u32::MAX);
            if let Some(reply) = self
                .power_up_step(conv, &session.plugin_id, "{}", text, turn)
                .await?
            {
                return Ok(Some(reply));
            }
        }
        let named = power_ups
            .into_iter()
            .find(|p| p.phrases.iter().any(|phrase| says(text, phrase)));
        if let Some(power_up) = named {
            return self.power_up_step(conv, &power_up.id, "{}", text, 0).await;
        }
        Ok(None)
    }

    /// Runs one step of a power-up and turns it into the bot's reply; keeps
    /// the session while it asks. `None` when the power-up failed: the
    /// built-in bot answers instead.
    pub(crate) async fn power_up_step(
        &self,
        conv: &Conversation,
        plugin: &str,
        arguments: &str,
        text: &str,
        turn: u32,
    ) -> Result<Option<BotReply>> {
        let Some(host) = self.plugins() else {
            return Ok(None);
        };
        let step = host
            .invoke_power_up(
                self.plugin_api(),
                plugin,
                &conversation_info(conv),
                arguments,
                text,
                turn,
            )
            .await;
        // Kept with the conversation while it asks; written with the reply.
        let session = match &step {
            Ok(Step::Ask(_)) => serde_json::to_string(&PowerUpSession {
                plugin_id: plugin.to_owned(),
                turn: i64::from(turn),
            })
            .ok(),
            _ => None,
        };
        let say = |text: String| BotMessage {
            text,
            actions: vec![],
        };
        let mut reply = match step {
            Err(e) => {
                warn!(conversation_id = %conv.id, plugin, error = %e, "power-up failed; the bot answers");
                return Ok(None);
            }
            Ok(Step::Ask(t) | Step::Reply(t)) => BotReply {
                messages: vec![say(t)],
                ..BotReply::default()
            },
            Ok(Step::Done(t)) => BotReply {
                messages: t.into_iter().map(say).collect(),
                ..BotReply::default()
            },
            Ok(Step::Escalate(e)) => self.plugin_escalation(conv, plugin, e).await?,
        };
        reply.power_up_session = Some(session);
        Ok(Some(reply))
    }

    /// A plugin's verdict as a hand-over: its tags (and `priority-<n>`) on
    /// the conversation, its note as an internal note for the agents, and
    /// the reason `plugin:<id>`.
    async fn plugin_escalation(
        &self,
        conv: &Conversation,
        plugin: &str,
        e: Escalation,
    ) -> Result<BotReply> {
        let mut tags = conv.tags.clone();
        tags.extend(e.tags);
        if e.priority > 0 {
            tags.push(format!("priority-{}", e.priority));
        }
        if tags != conv.tags
            && let Err(err) = self.set_tags(&conv.id, &tags).await
        {
            warn!(conversation_id = %conv.id, plugin, error = %err, "a plugin's tags were refused");
        }
        if let Some(note) = e.note.filter(|n| !n.trim().is_empty()) {
            let new = NewMessage {
                author: Some(AgentRef {
                    id: format!("plugin:{plugin}"),
                    name: plugin.to_owned(),
                }),
                internal: true,
                ..NewMessage::text(
                    SenderKind::System,
                    note.chars().take(2_000).collect::<String>(),
                )
            };
            self.append_now(&conv.id, new).await?;
        }
        let department = e.department.filter(|d| {
            let known = self.config().department(d).is_some();
            if !known {
                warn!(conversation_id = %conv.id, plugin, department = %d, "a plugin named an unknown department; routing decides");
            }
            known
        });
        Ok(BotReply {
            escalate: Some(Reason::plugin(plugin).map_err(|e| Error::Invalid(e.to_string()))?),
            department,
            ..BotReply::default()
        })
    }

    /// Queues action plugins for the hand-over that just happened: those the
    /// bot lists (`type = "plugin"`), or else every action plugin that is on.
    pub(crate) async fn queue_plugin_actions(
        &self,
        conv: &Conversation,
        listed: &[(usize, String)],
    ) {
        let Some(host) = self.plugins() else {
            return;
        };
        let Some(handover) = conv.state.handover.as_ref() else {
            return;
        };
        let plugins: Vec<(usize, String)> = if listed.is_empty() {
            host.actions()
                .into_iter()
                .map(|id| (usize::MAX, id))
                .collect()
        } else {
            listed.to_vec()
        };
        for (position, plugin) in plugins {
            // One key per hand-over and plugin: the same on every retry.
            let key = format!("{}:{}:{plugin}", conv.id, handover.at.millis());
            let queued = self
                .store()
                .enqueue_plugin_job(
                    &plugin,
                    &conv.id,
                    &key,
                    handover.reason.as_str(),
                    position.min(i64::MAX as usize) as i64,
                    self.now(),
                )
                .await;
            if let Err(e) = queued {
                warn!(conversation_id = %conv.id, plugin, error = %e, "cannot queue a plugin action");
            }
        }
        self.plugin_wake().notify_one();
    }

    /// The plugin-action queue: runs due jobs, retries failures with
    /// exponential back-off, gives up after `[plugins] action_attempts`.
    /// When `stop` turns true it claims no more; actions under way get a
    /// moment to finish, the rest are cancelled and queued again at once,
    /// their attempt not counted (their idempotency key stays the same).
    pub(crate) async fn plugin_jobs(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut running = tokio::task::JoinSet::new();
        // Task → (job, attempts as claimed), until the task ends.
        let mut claimed = std::collections::HashMap::new();
        loop {
            tokio::select! {
                _ = self.plugin_wake().notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    claimed.remove(&task_id(&done));
                }
                _ = stop.changed() => break,
            }
            if *stop.borrow_and_update() {
                break;
            }
            let Some(host) = self.plugins().cloned() else {
                continue;
            };
            let stale = host.settings().max_deadline_ms as i64 + 60_000;
            let jobs = match self.store().claim_plugin_jobs(self.now(), 16, stale).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    warn!(error = %e, "cannot read the plugin-action queue");
                    continue;
                }
            };
            for job in jobs {
                let rt = self.clone();
                let host = host.clone();
                let key = (job.id.clone(), job.attempts);
                let task = running.spawn(async move {
                    if let Err(e) = rt.run_plugin_job(&host, job).await {
                        warn!(error = %e, "a plugin action could not be recorded");
                    }
                });
                claimed.insert(task.id(), key);
            }
        }
        let grace = async {
            while let Some(done) = running.join_next_with_id().await {
                claimed.remove(&task_id(&done));
            }
        };
        if tokio::time::timeout(STOP_GRACE, grace).await.is_ok() {
            return;
        }
        running.shutdown().await;
        let now = self.now();
        for (job, attempts) in claimed.into_values() {
            match self.store().give_back_plugin_job(&job, attempts, now).await {
                Ok(true) => info!(job, "stopping: a plugin action under way queued again"),
                Ok(false) => {}
                Err(e) => warn!(job, error = %e, "stopping: cannot queue a plugin action again"),
            }
        }
    }

    async fn run_plugin_job(
        &self,
        host: &baton_plugins::PluginHost,
        job: baton_store::PluginJob,
    ) -> Result<()> {
        let conv = match self.conversation(&job.conversation_id).await {
            Ok(conv) => conv,
            Err(Error::NotFound(_)) => {
                let now = self.now();
                return Ok(self
                    .store()
                    .finish_plugin_job(
                        &job.id,
                        "failed",
                        now,
                        Some("the conversation is gone"),
                        now,
                    )
                    .await?);
            }
            Err(e) => return Err(e),
        };
        let attempt = u32::try_from(job.attempts).unwrap_or(u32::MAX);
        let outcome = host
            .run_action(
                self.plugin_api(),
                &job.plugin_id,
                &conversation_info(&conv),
                &job.idempotency_key,
                &job.reason,
                attempt,
            )
            .await;
        let now = self.now();
        let give_up = attempt >= host.settings().action_attempts;
        let (status, ok, detail) = match outcome {
            Ok(Outcome::Done(d)) => ("done", true, d),
            Ok(Outcome::Failed(d)) => ("failed", false, d),
            Ok(Outcome::Retry(d)) => ("retry", false, d),
            // A trap, a time-out, or the plugin off or gone for now: try again later.
            Err(e) => ("retry", false, e.to_string()),
        };
        let name = format!("plugin:{}", job.plugin_id);
        if status == "retry" && !give_up {
            let wait = (RETRY_BASE_MS << (attempt.saturating_sub(1)).min(20)).min(RETRY_MAX_MS);
            info!(conversation_id = %conv.id, plugin = %job.plugin_id, attempt, "plugin action will be retried: {detail}");
            return Ok(self
                .store()
                .finish_plugin_job(
                    &job.id,
                    "queued",
                    Timestamp::from_millis(now.millis() + wait),
                    Some(&detail),
                    now,
                )
                .await?);
        }
        let detail = if status == "retry" {
            format!("gave up after {attempt} attempts: {detail}")
        } else {
            detail
        };
        let final_status = if ok { "done" } else { "failed" };
        self.store()
            .finish_plugin_job(
                &job.id,
                final_status,
                now,
                (!ok).then_some(detail.as_str()),
                now,
            )
            .await?;
        self.store()
            .record_action_run(&conv.id, job.position, &name, ok, &detail, now)
            .await?;
        Ok(())
    }
}

/// Baton as plugins reach it.
pub(crate) struct RuntimeApi(Runtime);

fn text_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[async_trait]
impl HostApi for RuntimeApi {
    async fn conversation(&self, id: &str) -> std::result::Result<ConversationInfo, String> {
        let conv = self.0.conversation(id).await.map_err(text_err)?;
        Ok(conversation_info(&conv))
    }

    async fn history(&self, id: &str, limit: u32) -> std::result::Result<Vec<MessageInfo>, String> {
        let conv = self.0.conversation(id).await.map_err(text_err)?;
        let limit = i64::from(limit.clamp(1, 50));
        let messages = self
            .0
            .store()
            .messages(id, (conv.last_seq - limit).max(0), false, limit)
            .await
            .map_err(text_err)?;
        Ok(messages
            .into_iter()
            .map(|m| MessageInfo {
                sender: m.sender.to_string(),
                text: m.text,
                at: m.created_at.millis(),
            })
            .collect())
    }

    async fn add_tag(&self, id: &str, tag: &str) -> std::result::Result<(), String> {
        let conv = self.0.conversation(id).await.map_err(text_err)?;
        let tag = tag.trim().to_lowercase();
        if conv.tags.contains(&tag) {
            return Ok(());
        }
        let mut tags = conv.tags.clone();
        tags.push(tag);
        self.0
            .set_tags(id, &tags)
            .await
            .map(|_| ())
            .map_err(text_err)
    }

    async fn send(&self, id: &str, _plugin: &str, text: &str) -> std::result::Result<(), String> {
        let conv = self.0.conversation(id).await.map_err(text_err)?;
        let spoke = self
            .0
            .send_as_bot(&conv, text.chars().take(4_000).collect())
            .await
            .map_err(text_err)?;
        if spoke {
            Ok(())
        } else {
            Err("a human holds the conversation; the bot stays quiet".into())
        }
    }

    async fn notify(
        &self,
        plugin: &str,
        email: Option<&str>,
        text: &str,
    ) -> std::result::Result<(), String> {
        let store = self.0.store();
        let recipients: Vec<baton_store::User> = match email {
            Some(email) => vec![
                store
                    .user_by_email(email)
                    .await
                    .map_err(text_err)?
                    .ok_or_else(|| format!("no staff member has the email `{email}`"))?,
            ],
            None => store
                .list_users()
                .await
                .map_err(text_err)?
                .into_iter()
                .filter(|u| u.role == baton_model::Role::Owner)
                .collect(),
        };
        let text: String = text.chars().take(1_000).collect();
        for user in recipients {
            store
                .create_notification(
                    &user.id,
                    "plugin",
                    None,
                    None,
                    &format!("{plugin}: {text}"),
                    self.0.now(),
                )
                .await
                .map_err(text_err)?;
        }
        Ok(())
    }

    async fn kv_get(&self, plugin: &str, key: &str) -> std::result::Result<Option<String>, String> {
        self.0.store().kv_get(plugin, key).await.map_err(text_err)
    }

    async fn kv_set(
        &self,
        plugin: &str,
        key: &str,
        value: &str,
    ) -> std::result::Result<(), String> {
        self.0
            .store()
            .kv_set(plugin, key, value, self.0.now())
            .await
            .map_err(text_err)
    }

    async fn kv_delete(&self, plugin: &str, key: &str) -> std::result::Result<(), String> {
        self.0
            .store()
            .kv_delete(plugin, key)
            .await
            .map_err(text_err)
    }

    async fn fetch(&self, request: HttpRequest) -> std::result::Result<HttpResponse, String> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(text_err)?;
        let mut builder = self
            .0
            .http()
            .request(method, &request.url)
            .timeout(request.timeout.max(Duration::from_millis(1)));
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading the response failed: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_RESPONSE {
                return Err(format!("the response is larger than {MAX_RESPONSE} bytes"));
            }
        }
        Ok(HttpResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::says;

    #[test]
    fn phrases_match_whole_words_whatever_the_case() {
        assert!(says("Can I TALK to a human, please?", "talk to a human"));
        assert!(says("where is my order #123", "where is my order"));
        assert!(!says("stalk to a humane", "talk to a human"));
        assert!(!says("anything", "  "));
    }
}
