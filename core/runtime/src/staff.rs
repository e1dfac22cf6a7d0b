//! What staff (and the runtime on their behalf) do to a conversation:
//! escalate, claim, write, hand back, resolve, transfer, tag; and the reads
//! the API shows them.

use crate::bot::BotMessage;
use crate::unit::{Committed, HandoverNotice, PlanContext, bot_plan, pause_ms, transition_plan};
use crate::{Error, PRESENCE_TIMEOUT_MS, Result, Runtime};
use baton_model::routing::Availability;
use baton_model::wire::ConversationView;
use baton_model::{AgentRef, Conversation, Input, Message, Reason, SenderKind, Status};
use baton_store::{Decision, NewMessage, Plan, Side, Unit};
use tracing::{info, warn};

impl Runtime {
    /// Hands a conversation to a human. Without a reason, the reason is `manual`.
    pub async fn escalate(
        &self,
        conversation_id: &str,
        reason: Reason,
        by: Option<&AgentRef>,
        department: Option<String>,
    ) -> Result<Conversation> {
        self.escalate_about(
            conversation_id,
            reason,
            by,
            department,
            None,
            vec![],
            Side::default(),
        )
        .await
    }

    /// A hand-over, with what comes with it: the topic it is about
    /// (`Some(None)`: none; `None`: the one the conversation has), the bot's
    /// last words before it (written only if the bot may still speak) and
    /// side state from the turn. One unit: the words, the transition, its
    /// notice and events commit together.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn escalate_about(
        &self,
        conversation_id: &str,
        reason: Reason,
        by: Option<&AgentRef>,
        department: Option<String>,
        topic: Option<Option<String>>,
        bot_words: Vec<BotMessage>,
        side: Side,
    ) -> Result<Conversation> {
        let before = self.conversation(conversation_id).await?;
        let topic_now = match &topic {
            Some(t) => t.clone(),
            None => before.memory.topic.clone(),
        };
        let department = department.or_else(|| self.route(&before.bot_id, topic_now.as_deref()));
        if let Some(d) = &department
            && self.config().department(d).is_none()
        {
            return Err(Error::Invalid(format!("unknown department `{d}`")));
        }
        let ctx = self
            .handover_context(&before.bot_id, department.as_deref())
            .await?;
        let messages: Vec<NewMessage> = bot_words
            .into_iter()
            .map(|m| self.bot_message(&before.bot_id, m.text, m.actions))
            .collect();
        let now = self.now();
        let by = by.map(|a| a.id.clone());
        let pause = pause_ms(&ctx.bot);
        let reason_text = reason.to_string();
        let unit = Unit {
            conversation_id: conversation_id.to_owned(),
            dedupe: None,
            seat: None,
            now,
            plan: Box::new(move |conv| {
                let mut side = side;
                if let Some(t) = topic {
                    side.topic = Some(t);
                }
                // The bot's last words go out only if it may still speak;
                // the hand-over goes ahead either way.
                let plan = match bot_plan(conv, now, messages, side.clone()) {
                    Decision::Apply(plan) => plan,
                    _ => Plan {
                        side,
                        ..Plan::default()
                    },
                };
                let input = Input::Escalate {
                    reason,
                    by,
                    department,
                    pause_bot_for_ms: pause,
                };
                match transition_plan(conv, input, now, &ctx, plan) {
                    Ok(plan) => Decision::Apply(plan),
                    Err(e) => Decision::Refuse(e),
                }
            }),
        };
        let conv = self.commit(unit).await?.conversation();
        if conv.state.escalated_at != before.state.escalated_at {
            info!(%conversation_id, reason = %reason_text, "conversation escalated");
        }
        Ok(conv)
    }

    /// What a hand-over in `department` tells the visitor: someone is
    /// coming, their place in the queue, or that nobody is there.
    async fn handover_context(
        &self,
        bot_id: &str,
        department: Option<&str>,
    ) -> Result<PlanContext> {
        let handover_notice = match self.availability(department).await? {
            Availability::Available => HandoverNotice::Online,
            Availability::Busy => HandoverNotice::Queued,
            Availability::Offline => HandoverNotice::Offline,
        };
        Ok(PlanContext {
            bot: self.bot_config(bot_id),
            handover_notice,
        })
    }

    /// A staff member's presence changed: an online agent may take queued conversations.
    pub fn presence_changed(&self) {
        if self.auto_assignment() {
            let rt = self.clone();
            self.tasks().spawn(async move { rt.assign_waiting().await });
        }
    }

    /// A staff member was removed: the conversations they held go back to
    /// the queue (visitors are not left with nobody), and assignment runs.
    pub async fn user_removed(&self, agent: &AgentRef) {
        let held = self
            .store()
            .list_conversations(&baton_store::ConversationFilter {
                status: Some(Status::Active),
                assignee: baton_store::AssigneeFilter::User(agent.id.clone()),
                limit: 10_000,
                ..Default::default()
            })
            .await;
        match held {
            Ok(held) => {
                for conv in held {
                    let by = agent.clone();
                    if let Err(e) = self.apply(&conv.id, move |_| Input::Unclaim { by }).await {
                        warn!(conversation_id = %conv.id, error = %e, "cannot requeue a removed user's conversation");
                    }
                }
            }
            Err(e) => {
                warn!(user_id = %agent.id, error = %e, "cannot list a removed user's conversations")
            }
        }
        self.presence_changed();
    }

    pub async fn claim(&self, conversation_id: &str, agent: &AgentRef) -> Result<Conversation> {
        let unit = self.claim_unit(conversation_id, agent);
        Ok(self.commit(unit).await?.conversation())
    }

    /// A staff member writes: to the visitor (claiming first where needed) or an internal note.
    pub async fn agent_message(
        &self,
        conversation_id: &str,
        agent: &AgentRef,
        text: String,
        internal: bool,
    ) -> Result<Message> {
        self.agent_message_once(conversation_id, agent, text, internal, None)
            .await
    }

    /// [`Runtime::agent_message`], stored once per `client_id` (a console's
    /// redelivered reply returns the earlier copy).
    pub async fn agent_message_once(
        &self,
        conversation_id: &str,
        agent: &AgentRef,
        text: String,
        internal: bool,
        client_id: Option<String>,
    ) -> Result<Message> {
        let limit = self.config().limits.max_message_bytes;
        if text.len() > limit {
            return Err(Error::TooLarge { limit });
        }
        if text.trim().is_empty() {
            return Err(Error::Invalid("message text must not be empty".into()));
        }
        let new = NewMessage {
            author: Some(agent.clone()),
            internal,
            client_id: client_id.clone(),
            ..NewMessage::text(SenderKind::Agent, text)
        };
        let agent = agent.clone();
        let now = self.now();
        let rt = self.clone();
        let unit = Unit {
            conversation_id: conversation_id.to_owned(),
            dedupe: client_id.map(|c| (Some(c), None)),
            seat: None,
            now,
            plan: Box::new(move |conv| {
                let ctx = rt.plan_context(&conv.bot_id);
                let pause = pause_ms(&ctx.bot);
                if internal {
                    // A note changes nothing about who holds the conversation.
                    return Decision::Apply(crate::unit::finish(Plan {
                        messages: vec![new],
                        ..Plan::default()
                    }));
                }
                let input = Input::AgentMessage {
                    agent,
                    pause_bot_for_ms: pause,
                };
                // Notices ("Alice joined") go before the reply itself.
                match transition_plan(conv, input, now, &ctx, Plan::default()) {
                    Ok(mut plan) => {
                        plan.messages.push(new);
                        Decision::Apply(crate::unit::finish(plan))
                    }
                    Err(e) => Decision::Refuse(e),
                }
            }),
        };
        match self.commit(unit).await? {
            Committed::Applied(done) => done
                .messages
                .into_iter()
                .last()
                .ok_or(Error::NotFound("message")),
            Committed::Duplicate(_, existing) => Ok(existing),
            Committed::Skipped(..) => Err(Error::Invalid("the message was not stored".into())),
        }
    }

    /// Applies one hand-over input, built from the conversation as the lock
    /// shows it, with its effects, atomically.
    pub async fn apply(
        &self,
        conversation_id: &str,
        input: impl FnOnce(&Conversation) -> Input + Send + 'static,
    ) -> Result<Conversation> {
        let unit = self.transition_unit(conversation_id, move |conv, _| input(conv));
        Ok(self.commit(unit).await?.conversation())
    }

    /// Replaces a conversation's tags (trimmed, lower-cased, de-duplicated).
    pub async fn set_tags(&self, conversation_id: &str, tags: &[String]) -> Result<Conversation> {
        let mut clean: Vec<String> = Vec::new();
        for tag in tags {
            let tag = tag.trim().to_lowercase();
            if tag.is_empty() || tag.chars().count() > 50 {
                return Err(Error::Invalid("each tag must be 1 to 50 characters".into()));
            }
            if !clean.contains(&tag) {
                clean.push(tag);
            }
        }
        if clean.len() > 50 {
            return Err(Error::Invalid("at most 50 tags per conversation".into()));
        }
        let unit = Unit {
            conversation_id: conversation_id.to_owned(),
            dedupe: None,
            seat: None,
            now: self.now(),
            plan: Box::new(move |conv| {
                if conv.tags == clean {
                    return Decision::Skip(baton_store::Skip::Unchanged);
                }
                Decision::Apply(Plan {
                    side: Side {
                        tags: Some(clean),
                        ..Side::default()
                    },
                    ..Plan::default()
                })
            }),
        };
        Ok(self.commit(unit).await?.conversation())
    }

    /// Keeps the bot silent until `until` (never shortens a running pause).
    pub(crate) async fn pause_bot_until(
        &self,
        conversation_id: &str,
        until: baton_model::Timestamp,
    ) -> Result<()> {
        let unit = Unit {
            conversation_id: conversation_id.to_owned(),
            dedupe: None,
            seat: None,
            now: self.now(),
            plan: Box::new(move |conv| {
                if conv.state.bot_paused_until.is_some_and(|t| t >= until) {
                    return Decision::Skip(baton_store::Skip::Unchanged);
                }
                let mut state = conv.state.clone();
                state.bot_paused_until = Some(until);
                Decision::Apply(Plan {
                    state: Some(state),
                    ..Plan::default()
                })
            }),
        };
        self.commit(unit).await.map(|_| ())
    }

    /// Sends a message as the conversation's bot, if the bot may speak now.
    pub(crate) async fn send_as_bot(&self, conv: &Conversation, text: String) -> Result<bool> {
        let message = self.bot_message(&conv.bot_id, text, vec![]);
        let now = self.now();
        let unit = Unit {
            conversation_id: conv.id.clone(),
            dedupe: None,
            seat: None,
            now,
            plan: Box::new(move |c| bot_plan(c, now, vec![message], Side::default())),
        };
        Ok(matches!(self.commit(unit).await?, Committed::Applied(_)))
    }

    /// Appends a system message (a closing message, a notice).
    pub(crate) async fn system_message(
        &self,
        conversation_id: &str,
        text: String,
    ) -> Result<Message> {
        self.append_now(conversation_id, NewMessage::text(SenderKind::System, text))
            .await
    }

    /// Appends one message outside any transition.
    pub(crate) async fn append_now(
        &self,
        conversation_id: &str,
        new: NewMessage,
    ) -> Result<Message> {
        let unit = Unit {
            conversation_id: conversation_id.to_owned(),
            dedupe: None,
            seat: None,
            now: self.now(),
            plan: Box::new(move |_| {
                Decision::Apply(crate::unit::finish(Plan {
                    messages: vec![new],
                    ..Plan::default()
                }))
            }),
        };
        match self.commit(unit).await? {
            Committed::Applied(done) => done
                .messages
                .into_iter()
                .next()
                .ok_or(Error::NotFound("message")),
            _ => Err(Error::Invalid("the message was not stored".into())),
        }
    }

    /// Whether some agent who may answer is online: the widget offers a
    /// leave-a-message form when nobody is.
    pub async fn agents_available(&self) -> Result<bool> {
        Ok(self.availability(None).await? != Availability::Offline)
    }

    /// A staff member's presence as visitors should see it: what they chose,
    /// but `offline` once nothing has been heard from them for
    /// [`PRESENCE_TIMEOUT_MS`] (a closed laptop does not sign out).
    pub fn effective_presence(&self, user: &baton_store::User) -> baton_model::Presence {
        let fresh = user
            .last_seen_at
            .is_some_and(|seen| self.now().since(seen) <= PRESENCE_TIMEOUT_MS);
        if fresh {
            user.presence
        } else {
            baton_model::Presence::Offline
        }
    }

    pub async fn conversation(&self, id: &str) -> Result<Conversation> {
        self.store()
            .conversation(id)
            .await?
            .ok_or(Error::NotFound("conversation"))
    }

    /// 1-based position in its department's queue, for a `waiting` conversation.
    pub async fn queue_position(&self, conv: &ConversationView) -> Result<Option<usize>> {
        if conv.status != Status::Waiting {
            return Ok(None);
        }
        let queue = self.store().queue(conv.department.as_deref()).await?;
        Ok(queue
            .iter()
            .position(|(id, _)| *id == conv.id)
            .map(|i| i + 1))
    }

    /// Whether staff without monitoring see this conversation (DESIGN.md, monitoring mode).
    pub fn visible_to_staff(&self, conv: &ConversationView) -> bool {
        conv.status != Status::Bot || self.bot_config(&conv.bot).handover.monitoring
    }
}
