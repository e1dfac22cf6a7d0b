//! What visitors do: start a conversation, write, press a button, ask for a
//! human, leave a message, answer the contact collector.

use crate::bot::BotMessage;
use crate::unit::{Committed, bot_plan, transition_plan};
use crate::{Error, Result, Runtime, StartConversation};
use baton_channel::{Inbound, Ingested};
use baton_model::{
    ActionKind, AgentRef, ChannelKind, Conversation, Input, LEFT_MESSAGE_TAG, PendingTurn, Reason,
    SenderKind, Status, bot_may_speak,
};
use baton_store::{
    ContactUpdate, Decision, NewContact, NewConversation, NewMessage, Outcome, Plan, Side, Unit,
};
use tracing::{debug, info, warn};

impl Runtime {
    /// Creates a conversation in `bot` status, records `conversation.started`
    /// and lets the bot greet.
    pub async fn start_conversation(&self, start: StartConversation) -> Result<Conversation> {
        self.start_conversation_with(start, true).await
    }

    pub(crate) async fn start_conversation_with(
        &self,
        start: StartConversation,
        greet: bool,
    ) -> Result<Conversation> {
        if !self.has_bot(&start.bot_id) {
            return Err(Error::NotFound("bot"));
        }
        let greeting = self.bot_config(&start.bot_id).greeting.clone();
        let first = (greet && !greeting.trim().is_empty())
            .then(|| self.bot_message(&start.bot_id, greeting, vec![]));
        let outcome = self
            .store()
            .start_conversation(
                NewConversation {
                    bot_id: start.bot_id,
                    channel: start.channel,
                    contact: start.contact,
                    thread_key: start.thread_key,
                    visitor_token_hash: start.visitor_token_hash,
                },
                first,
                self.now(),
            )
            .await?;
        match outcome {
            Outcome::Applied { conversation, .. } => {
                info!(conversation_id = %conversation.id, channel = %conversation.channel, "conversation started");
                Ok(conversation)
            }
            _ => Err(Error::Invalid(
                "the conversation could not be started".into(),
            )),
        }
    }

    /// The visitor pressed a button: "talk to a human" or a quick reply.
    pub async fn visitor_action(
        &self,
        conversation_id: &str,
        action: &str,
    ) -> Result<Conversation> {
        let conv = self.conversation(conversation_id).await?;
        if action == "request_human" {
            return self.request_human(conv).await;
        }
        if action == baton_channel::START_ACTION {
            // Opening the conversation greeted already; `/start` again changes nothing.
            return Ok(conv);
        }
        // A quick reply is the visitor saying the button's label.
        let recent = self
            .store()
            .messages(conversation_id, (conv.last_seq - 20).max(0), false, 50)
            .await?;
        let label = recent
            .iter()
            .rev()
            .filter(|m| m.sender == SenderKind::Bot)
            .flat_map(|m| m.actions.iter())
            .find(|a| a.id == action && a.kind == ActionKind::Reply)
            .map(|a| a.label.clone())
            .ok_or_else(|| Error::Invalid(format!("unknown action `{action}`")))?;
        let new = NewMessage::text(SenderKind::Visitor, label);
        Ok(self.store_inbound(&conv.id, new, true).await?.conversation)
    }

    async fn request_human(&self, conv: Conversation) -> Result<Conversation> {
        self.request_human_with(conv, true).await
    }

    pub(crate) async fn request_human_with(
        &self,
        conv: Conversation,
        collect_contact: bool,
    ) -> Result<Conversation> {
        let bot = self.bot_config(&conv.bot_id);
        if !bot.handover.enabled {
            return Err(Error::Invalid(
                "hand-over to a human is switched off for this bot".into(),
            ));
        }
        match conv.state.status {
            // Already with (or on the way to) a human: pressing again changes nothing.
            Status::Waiting | Status::Active => Ok(conv),
            Status::Resolved | Status::Bot => {
                let mut conv = conv;
                if conv.state.status == Status::Resolved {
                    conv = self.apply(&conv.id, |_| Input::VisitorMessage).await?;
                    // Inside a pause window a reopen goes straight to the team.
                    if conv.state.status != Status::Bot {
                        return Ok(conv);
                    }
                }
                let reason = Reason::known(Reason::VISITOR_REQUEST);
                // The button has no topic: the bot's own department takes it.
                if collect_contact && self.start_collecting(&conv, &reason, None, vec![]).await? {
                    return self.conversation(&conv.id).await;
                }
                self.escalate_about(&conv.id, reason, None, None, None, vec![], Side::default())
                    .await
            }
        }
    }

    /// Starts the contact collector before a hand-over when the bot asks for
    /// details the contact lacks: its question (as the bot, under the
    /// who-may-speak gate) and the pending hand-over are written together.
    /// False when nothing is missing, or the bot may not speak: the
    /// hand-over should go ahead.
    pub(crate) async fn start_collecting(
        &self,
        conv: &Conversation,
        reason: &Reason,
        topic: Option<String>,
        preface: Vec<BotMessage>,
    ) -> Result<bool> {
        let bot = self.bot_config(&conv.bot_id);
        let Some(baton_bot::Next::Ask { state, question }) = baton_bot::collect::start(
            &bot.handover.collect_contact.0,
            known_details(conv),
            reason.as_str(),
            topic,
        ) else {
            return Ok(false);
        };
        let json = serde_json::to_string(&state)
            .map_err(|e| Error::Invalid(format!("cannot store the collector: {e}")))?;
        let mut messages: Vec<NewMessage> = preface
            .into_iter()
            .map(|m| self.bot_message(&conv.bot_id, m.text, m.actions))
            .collect();
        messages.push(self.bot_message(&conv.bot_id, question, vec![]));
        let side = Side {
            collecting: Some(Some(json)),
            ..Side::default()
        };
        let now = self.now();
        let unit = Unit {
            conversation_id: conv.id.clone(),
            dedupe: None,
            seat: None,
            now,
            plan: Box::new(move |c| bot_plan(c, now, messages, side)),
        };
        // Dropped (the bot may not speak now): the hand-over goes ahead.
        Ok(matches!(self.commit(unit).await?, Committed::Applied(_)))
    }

    /// The leave-a-message form: the visitor's address (and name) go on the
    /// contact, the conversation joins the team's queue, and the text is stored
    /// there for whoever picks it up.
    pub async fn leave_message(
        &self,
        conversation_id: &str,
        name: Option<&str>,
        email: &str,
        text: Option<String>,
    ) -> Result<Conversation> {
        let limit = self.config().limits.max_message_bytes;
        if text.as_ref().is_some_and(|t| t.len() > limit) {
            return Err(Error::TooLarge { limit });
        }
        // The address, and the flag for the inbox, first: nothing after the
        // hand-over may fail.
        let contact = ContactUpdate {
            name: name.map(str::to_owned),
            email: Some(email.to_owned()),
            phone: None,
        };
        let unit = Unit {
            conversation_id: conversation_id.to_owned(),
            dedupe: None,
            seat: None,
            now: self.now(),
            plan: Box::new(move |conv| {
                let mut tags = conv.tags.clone();
                if !tags.iter().any(|t| t == LEFT_MESSAGE_TAG) && tags.len() < 50 {
                    tags.push(LEFT_MESSAGE_TAG.to_owned());
                }
                Decision::Apply(Plan {
                    side: Side {
                        contact: Some(contact),
                        tags: Some(tags),
                        ..Side::default()
                    },
                    ..Plan::default()
                })
            }),
        };
        let conv = self.commit(unit).await?.conversation();
        // The form asked already: no collector questions on top.
        let conv = self.request_human_with(conv, false).await?;
        if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
            self.store_inbound(&conv.id, NewMessage::text(SenderKind::Visitor, text), true)
                .await?;
        }
        self.conversation(conversation_id).await
    }

    /// Stores a visitor message (once, however often it is resent), reopens a
    /// resolved conversation, and lets the bot answer if it may.
    pub async fn ingest_inbound(&self, inbound: Inbound) -> Result<Ingested> {
        let limit = self.config().limits.max_message_bytes;
        if inbound.text.len() > limit {
            return Err(Error::TooLarge { limit });
        }
        if inbound.text.trim().is_empty()
            && inbound.attachments.is_empty()
            && inbound.action.is_none()
        {
            return Err(Error::Invalid("message text must not be empty".into()));
        }
        let conv = self.conversation_for(&inbound).await?;
        if let Some(action) = &inbound.action {
            let conversation = self.visitor_action(&conv.id, action).await?;
            return Ok(Ingested {
                conversation,
                message: None,
                duplicate: false,
            });
        }
        let new = NewMessage {
            sender: SenderKind::Visitor,
            author: None,
            text: inbound.text,
            internal: false,
            actions: vec![],
            attachments: inbound.attachments,
            client_id: inbound.client_id,
            channel_message_id: inbound.channel_message_id,
        };
        // Automated mail (an auto-reply, a bounce) is kept for the team to
        // read, with no state change, no bot turn and nothing sent.
        self.store_inbound(&conv.id, new, !inbound.no_reply).await
    }

    /// Stores a visitor's message once; `answer` runs the lifecycle (reopen,
    /// unread, a bot turn when the bot may speak), otherwise it is only kept.
    pub(crate) async fn store_inbound(
        &self,
        conversation_id: &str,
        new: NewMessage,
        answer: bool,
    ) -> Result<Ingested> {
        let now = self.now();
        let dedupe = (new.client_id.is_some() || new.channel_message_id.is_some())
            .then(|| (new.client_id.clone(), new.channel_message_id.clone()));
        let rt = self.clone();
        let unit = Unit {
            conversation_id: conversation_id.to_owned(),
            dedupe,
            seat: None,
            now,
            plan: Box::new(move |conv| {
                let plan = Plan {
                    messages: vec![new],
                    ..Plan::default()
                };
                if !answer {
                    return Decision::Apply(plan);
                }
                let ctx = rt.plan_context(&conv.bot_id);
                match transition_plan(conv, Input::VisitorMessage, now, &ctx, plan) {
                    Ok(mut plan) => {
                        // The bot is due to answer: say so with the message,
                        // so that a turn cut short is found and run again.
                        let state = plan.state.as_ref().unwrap_or(&conv.state);
                        if bot_may_speak(state, now)
                            && let Some(at) = plan
                                .messages
                                .iter()
                                .rposition(|m| m.sender == SenderKind::Visitor)
                        {
                            plan.side.turn = Some(Some(PendingTurn {
                                seq: conv.last_seq + 1 + at as i64,
                                node: rt.node_id().to_owned(),
                                at: now,
                            }));
                        }
                        Decision::Apply(plan)
                    }
                    Err(e) => Decision::Refuse(e),
                }
            }),
        };
        match self.commit(unit).await? {
            Committed::Applied(done) => {
                let message = done.messages.into_iter().next();
                if answer
                    && bot_may_speak(&done.conversation.state, now)
                    && let Some(m) = &message
                {
                    let rt = self.clone();
                    let (conv, text) = (done.conversation.clone(), m.text.clone());
                    self.tasks()
                        .spawn(async move { rt.bot_turn(conv, text).await });
                }
                Ok(Ingested {
                    conversation: done.conversation,
                    message,
                    duplicate: false,
                })
            }
            Committed::Duplicate(conversation, existing) => {
                debug!(conversation_id = %conversation.id, seq = existing.seq, "dropped a repeated message");
                Ok(Ingested {
                    conversation,
                    message: Some(existing),
                    duplicate: true,
                })
            }
            Committed::Skipped(conversation, _) => Ok(Ingested {
                conversation,
                message: None,
                duplicate: false,
            }),
        }
    }

    async fn conversation_for(&self, inbound: &Inbound) -> Result<Conversation> {
        if let Some(id) = &inbound.conversation_id {
            let conv = self.conversation(id).await?;
            // Email continues a web visitor's left message, from the address
            // they left (they reply to the agent's mail).
            let left_message_reply = inbound.channel == ChannelKind::Email
                && conv.accepts_mail_from(inbound.sender.email.as_deref());
            if conv.channel != inbound.channel && !left_message_reply {
                return Err(Error::Invalid("message arrived on another channel".into()));
            }
            return Ok(conv);
        }
        let store = self.store();
        if let Some(conv) = store
            .conversation_by_thread(inbound.channel, &inbound.thread_key)
            .await?
        {
            return Ok(conv);
        }
        let start = StartConversation {
            bot_id: crate::DEFAULT_BOT.to_owned(),
            channel: inbound.channel,
            contact: NewContact {
                name: inbound.sender.name.clone(),
                email: inbound.sender.email.clone(),
                phone: None,
                external_id: Some(inbound.sender.external_id.clone()),
            },
            thread_key: Some(inbound.thread_key.clone()),
            visitor_token_hash: None,
        };
        // A mail thread opens without a chat greeting, and automated mail
        // never gets one.
        let greet = inbound.channel != ChannelKind::Email && !inbound.no_reply;
        match self.start_conversation_with(start, greet).await {
            Ok(conv) => Ok(conv),
            // Two first messages raced; the other one created it.
            Err(Error::Store(e)) if e.is_unique_violation() => store
                .conversation_by_thread(inbound.channel, &inbound.thread_key)
                .await?
                .ok_or(Error::NotFound("conversation")),
            Err(e) => Err(e),
        }
    }

    /// The visitor answered the contact collector: what is valid goes on the
    /// contact, and the next question or the hand-over follows; all of it is
    /// written with the bot's reply.
    pub(crate) fn collector_turn(
        &self,
        conv: &Conversation,
        pending: &str,
        text: &str,
    ) -> (crate::BotReply, Side) {
        let Ok(state) = serde_json::from_str::<baton_bot::Collecting>(pending) else {
            warn!(conversation_id = %conv.id, "unreadable collector state; dropped");
            return (
                crate::BotReply::default(),
                Side {
                    collecting: Some(None),
                    ..Side::default()
                },
            );
        };
        let bot = self.bot_config(&conv.bot_id);
        let (update, next) = baton_bot::collect::answer(
            &state,
            &bot.handover.collect_contact.0,
            known_details(conv),
            text,
        );
        let mut side = Side::default();
        if update != baton_bot::ContactUpdate::default() {
            side.contact = Some(ContactUpdate {
                name: update.name,
                email: update.email,
                phone: update.phone,
            });
        }
        let say = |text: String| BotMessage {
            text,
            actions: vec![],
        };
        let reply = match next {
            baton_bot::Next::Ask { state, question } => {
                side.collecting = Some(serde_json::to_string(&state).ok());
                crate::BotReply {
                    messages: vec![say(question)],
                    ..crate::BotReply::default()
                }
            }
            baton_bot::Next::HandOver {
                reason,
                topic,
                said,
            } => {
                side.collecting = Some(None);
                crate::BotReply {
                    messages: vec![say(said)],
                    escalate: Reason::new(reason).ok(),
                    topic,
                    ..crate::BotReply::default()
                }
            }
        };
        (reply, side)
    }

    pub(crate) fn bot_message(
        &self,
        bot_id: &str,
        text: String,
        actions: Vec<baton_model::Action>,
    ) -> NewMessage {
        NewMessage {
            author: Some(AgentRef {
                id: format!("bot:{bot_id}"),
                name: self.bot_config(bot_id).name.clone(),
            }),
            actions,
            ..NewMessage::text(SenderKind::Bot, text)
        }
    }
}

/// Which contact details the collector need not ask for.
pub(crate) fn known_details(conv: &Conversation) -> baton_bot::Known {
    baton_bot::Known {
        email: conv.contact.email.is_some(),
        name: conv.contact.name.is_some(),
        phone: conv.contact.phone.is_some(),
    }
}
