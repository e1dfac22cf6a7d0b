//! The bot's turn, as ordered stages:
//!
//! 1. **Gate**: the bot answers only while it may speak (checked again, under
//!    the lock, when the answer is written).
//! 2. **Decide**: a pending contact collector takes the answer; else trigger
//!    plugins and power-ups; else the bot (the knowledge base, or the LLM
//!    with the knowledge base as fallback), given the trigger counters kept
//!    with the conversation, not the transcript.
//! 3. **Prepare the hand-over**: when the turn hands over and the bot asks
//!    for contact details first, the collector's question is the answer.
//! 4. **Write**: one unit carries the bot's messages, the counters, the
//!    collector's and power-up's state, the topic and, when the turn hands
//!    over, the transition with its notice; so nothing of a turn is written
//!    without the rest.
//!
//! A turn is durable: the unit that stores the visitor's message records
//! the turn as due (`BotMemory::turn`: which message, which node), and the
//! unit that writes the answer (or takes the conversation from the bot)
//! clears it. A turn whose node died while the bot was thinking is found by
//! [`Runtime::recover_turns`] on any node, taken over in a unit of its own
//! (so two nodes never both take it) and run again: the visitor gets one
//! answer.

use crate::bot::{BotReply, BotTurn};
use crate::unit::bot_plan;
use crate::{Result, Runtime};
use baton_model::{Conversation, Message, PendingTurn, bot_may_speak};
use baton_store::{Decision, Plan, Side, Skip, Unit};
use std::time::Duration;
use tracing::{info, warn};

/// How often every node looks for turns left behind.
const RECOVERY_PERIOD: Duration = Duration::from_secs(3);

/// A turn of this node's own still due after this long failed (the bot or
/// the store erred): it is run again.
const OWN_TURN_STALE: Duration = Duration::from_secs(180);

impl Runtime {
    /// One bot turn on the visitor's message `text` (just stored in `conv`).
    pub(crate) async fn bot_turn(&self, conv: Conversation, text: String) {
        if let Err(e) = self.try_bot_turn(conv, text).await {
            warn!(error = %e, "bot turn failed");
        }
    }

    async fn try_bot_turn(&self, conv: Conversation, text: String) -> Result<()> {
        // 1. Gate.
        if !bot_may_speak(&conv.state, self.now()) {
            return self.drop_turn(&conv.id).await;
        }
        let settings = self.bot_config(&conv.bot_id);
        // 2. Decide.
        let pending = conv.memory.collecting.clone();
        let from_collector = pending.is_some();
        let (mut reply, mut side) = match &pending {
            Some(pending) => self.collector_turn(&conv, pending, &text),
            None => match self.plugin_turn(&conv, &text).await? {
                Some(reply) => (reply, Side::default()),
                None => (
                    self.ask_bot(&conv, &text, &settings).await?,
                    Side::default(),
                ),
            },
        };
        // The model chose a power-up: run it now, after what the model said.
        if let Some(call) = reply.power_up.take()
            && let Some(step) = self
                .power_up_step(&conv, &call.plugin, &call.arguments, &text, 0)
                .await?
        {
            reply.messages.extend(step.messages);
            reply.escalate = step.escalate;
            reply.department = step.department;
            reply.power_up_session = step.power_up_session;
        }
        if let Some(counters) = reply.counters {
            side.counters = Some(serde_json::to_string(&counters).ok());
        }
        if let Some(session) = reply.power_up_session.take() {
            side.power_up = Some(session);
        }
        // 3. The bot wants a human: first the contact's details, where configured.
        if let Some(reason) = reply.escalate.clone()
            && !from_collector
            && settings.handover.enabled
            && self
                .start_collecting(&conv, &reason, reply.topic.clone(), reply.messages.clone())
                .await?
        {
            return Ok(());
        }
        // 4. Write.
        match reply.escalate {
            Some(reason) => {
                // This hand-over's topic, or none: an older one must not route it.
                let result = self
                    .escalate_about(
                        &conv.id,
                        reason,
                        None,
                        reply.department,
                        Some(reply.topic),
                        reply.messages,
                        side,
                    )
                    .await;
                match result {
                    Ok(_) | Err(crate::Error::Transition(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            None => {
                let messages = reply
                    .messages
                    .into_iter()
                    .map(|m| self.bot_message(&conv.bot_id, m.text, m.actions))
                    .collect();
                let now = self.now();
                let unit = Unit {
                    conversation_id: conv.id.clone(),
                    dedupe: None,
                    seat: None,
                    now,
                    plan: Box::new(move |c| bot_plan(c, now, messages, side)),
                };
                self.commit(unit).await.map(|_| ())
            }
        }
    }

    /// The bot may not speak now (it is paused): the turn due is dropped.
    async fn drop_turn(&self, conversation_id: &str) -> Result<()> {
        let now = self.now();
        let unit = Unit {
            conversation_id: conversation_id.to_owned(),
            dedupe: None,
            seat: None,
            now,
            plan: Box::new(move |c| {
                if c.memory.turn.is_none() || bot_may_speak(&c.state, now) {
                    return Decision::Skip(Skip::Unchanged);
                }
                Decision::Apply(Plan {
                    side: Side {
                        turn: Some(None),
                        ..Side::default()
                    },
                    ..Plan::default()
                })
            }),
        };
        self.commit(unit).await.map(|_| ())
    }

    /// Finds the bot turns nobody runs any more (their node died, or this
    /// node's own failed long ago) and runs each once: now, then every few
    /// seconds.
    pub(crate) async fn recover_turns(self) {
        loop {
            let alive = self.alive_since();
            let stale = self.now().plus_millis(-(OWN_TURN_STALE.as_millis() as i64));
            match self
                .store()
                .orphaned_turns(self.node_id(), alive, stale, 100)
                .await
            {
                Ok(orphans) => {
                    for (id, turn) in orphans {
                        if let Err(e) = self.take_turn(&id, turn).await {
                            warn!(conversation_id = %id, error = %e, "cannot take over a bot turn");
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot look for bot turns left behind"),
            }
            tokio::time::sleep(RECOVERY_PERIOD).await;
        }
    }

    /// Takes a turn left behind for this node (a unit: of two nodes that
    /// try, one wins), then runs it.
    async fn take_turn(&self, conversation_id: &str, left: PendingTurn) -> Result<()> {
        let now = self.now();
        let mine = PendingTurn {
            seq: left.seq,
            node: self.node_id().to_owned(),
            at: now,
        };
        let unit = Unit {
            conversation_id: conversation_id.to_owned(),
            dedupe: None,
            seat: None,
            now,
            plan: Box::new(move |c| {
                if c.memory.turn.as_ref() != Some(&left) {
                    return Decision::Skip(Skip::Unchanged);
                }
                Decision::Apply(Plan {
                    side: Side {
                        turn: Some(Some(mine)),
                        ..Side::default()
                    },
                    ..Plan::default()
                })
            }),
        };
        let crate::unit::Committed::Applied(done) = self.commit(unit).await? else {
            return Ok(());
        };
        let conversation = done.conversation;
        let seq = conversation.memory.turn.as_ref().map_or(0, |t| t.seq);
        let text = self
            .store()
            .messages(&conversation.id, seq - 1, false, 1)
            .await?
            .into_iter()
            .find(|m| m.seq == seq)
            .map(|m| m.text)
            .unwrap_or_default();
        info!(conversation_id = %conversation.id, seq, "running a bot turn left behind");
        let rt = self.clone();
        self.tasks()
            .spawn(async move { rt.bot_turn(conversation, text).await });
        Ok(())
    }

    /// Asks the bot (the knowledge base, or an LLM), with the counters kept
    /// with the conversation and, for a bot that reads it, its transcript.
    async fn ask_bot(
        &self,
        conv: &Conversation,
        text: &str,
        settings: &crate::config::BotConfig,
    ) -> Result<BotReply> {
        let history: Vec<Message> = if self.bot_engine().wants_history() {
            self.store()
                .messages(&conv.id, (conv.last_seq - 30).max(0), false, 30)
                .await?
        } else {
            Vec::new()
        };
        let counters = conv
            .memory
            .counters
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default();
        let bus = self.bus().clone();
        let id = conv.id.clone();
        let draft = move |text: &str| {
            // Nobody following is fine: a draft is only a preview.
            bus.signal(&id, crate::bus::Signal::Draft(text.into()));
        };
        Ok(self
            .bot_engine()
            .reply(BotTurn {
                bot_id: &conv.bot_id,
                conversation: conv,
                history: &history,
                text,
                counters,
                settings,
                draft: &draft,
                tools: &self.plugin_tools(),
            })
            .await)
    }
}
