//! The one way a conversation changes: a unit of work.
//!
//! Every flow (a visitor's message, a staff member's claim, the bot's
//! answer, an action's closing message) becomes one [`Unit`]: the store
//! reads the conversation under its lock, the plan built here decides what
//! that input does to it (`baton_model::step` for transitions, the notices
//! and events its effects call for, the side state that travels along),
//! and the store writes it in one transaction. Once it committed,
//! [`Runtime::commit`] announces it (`fanout`).
//!
//! The who-may-speak rule is applied in exactly one place, [`bot_plan`]:
//! a bot message is written only if `bot_may_speak` holds for the
//! conversation as the lock shows it.

use crate::config::BotConfig;
use crate::{Error, Result, Runtime};
use baton_model::{
    Conversation, Effect, Input, Message, Notice, SenderKind, Status, Timestamp, TransitionError,
    bot_may_speak, step,
};
use baton_store::{Decision, NewMessage, Outcome, Plan, Side, Skip, StoredEvent, Unit};
use std::sync::Arc;

/// What a committed unit left behind.
#[derive(Debug)]
pub(crate) struct Done {
    pub conversation: Conversation,
    pub messages: Vec<Message>,
}

/// What became of a unit.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // One per unit, moved once.
pub(crate) enum Committed {
    Applied(Done),
    /// The message was stored before; this is the earlier copy.
    Duplicate(Conversation, Message),
    Skipped(Conversation, #[allow(dead_code)] Skip),
}

impl Committed {
    pub(crate) fn conversation(self) -> Conversation {
        match self {
            Committed::Applied(d) => d.conversation,
            Committed::Duplicate(c, _) | Committed::Skipped(c, _) => c,
        }
    }
}

/// What the visitor is told when a conversation is handed over, decided
/// before the unit (it depends on who is online, which is no part of the
/// conversation's row).
#[derive(Clone, Debug)]
pub(crate) enum HandoverNotice {
    /// Someone is coming: the bot's `online_message`.
    Online,
    /// Everyone is busy: the `queue_message`, with the place filled in.
    Queued,
    /// Nobody is there: the `offline_message`.
    Offline,
}

/// What a transition's plan needs besides the conversation.
#[derive(Clone)]
pub(crate) struct PlanContext {
    pub bot: Arc<BotConfig>,
    pub handover_notice: HandoverNotice,
}

impl Runtime {
    /// Runs one unit and, once it committed, announces what it wrote.
    pub(crate) async fn commit(&self, unit: Unit) -> Result<Committed> {
        let outcome = self.store().unit(unit).await?;
        self.settle(outcome)
    }

    /// Runs units together (one commit on SQLite, one transaction on
    /// PostgreSQL), in order; each fails alone. What each did, as the
    /// conversation it left (tests drive races through this).
    #[doc(hidden)]
    pub async fn commit_together(&self, units: Vec<Unit>) -> Vec<Result<(Conversation, bool)>> {
        self.store()
            .units(units)
            .await
            .into_iter()
            .map(|r| {
                r.map_err(Error::from)
                    .and_then(|o| self.settle(o))
                    .map(|c| {
                        let wrote = matches!(c, Committed::Applied(_));
                        (c.conversation(), wrote)
                    })
            })
            .collect()
    }

    /// A unit that claims for `agent` ("stop the bot and join" from `bot`).
    #[doc(hidden)]
    pub fn claim_unit(&self, conversation_id: &str, agent: &baton_model::AgentRef) -> Unit {
        let agent = agent.clone();
        self.transition_unit(conversation_id, move |_, ctx| Input::Claim {
            agent,
            pause_bot_for_ms: pause_ms(&ctx.bot),
        })
    }

    /// A unit with one bot reply, under the who-may-speak gate.
    #[doc(hidden)]
    pub fn bot_reply_unit(&self, conversation_id: &str, bot_id: &str, text: &str) -> Unit {
        let message = self.bot_message(bot_id, text.to_owned(), vec![]);
        let now = self.now();
        Unit {
            conversation_id: conversation_id.to_owned(),
            dedupe: None,
            seat: None,
            now,
            plan: Box::new(move |c| bot_plan(c, now, vec![message], Side::default())),
        }
    }

    fn settle(&self, outcome: Outcome) -> Result<Committed> {
        match outcome {
            // What follows the commit was announced by the store, in
            // commit order (`fanout`).
            Outcome::Applied {
                conversation,
                messages,
                ..
            } => Ok(Committed::Applied(Done {
                conversation,
                messages,
            })),
            Outcome::Duplicate {
                conversation,
                message,
            } => Ok(Committed::Duplicate(conversation, message)),
            Outcome::Skipped { conversation, why } => Ok(Committed::Skipped(conversation, why)),
            Outcome::Refused(e) => Err(Error::Transition(e)),
            Outcome::Invalid(m) => Err(Error::Invalid(m)),
            Outcome::NotFound => Err(Error::NotFound("conversation")),
        }
    }

    /// The context of a transition's plan for a conversation of `bot_id`.
    pub(crate) fn plan_context(&self, bot_id: &str) -> PlanContext {
        PlanContext {
            bot: self.bot_config(bot_id),
            handover_notice: HandoverNotice::Online,
        }
    }

    /// A unit that applies one hand-over input built from the conversation
    /// as the lock shows it (and its bot's settings).
    pub(crate) fn transition_unit(
        &self,
        conversation_id: &str,
        input: impl FnOnce(&Conversation, &PlanContext) -> Input + Send + 'static,
    ) -> Unit {
        let now = self.now();
        let rt = self.clone();
        Unit {
            conversation_id: conversation_id.to_owned(),
            dedupe: None,
            seat: None,
            now,
            plan: Box::new(move |conv| {
                let ctx = rt.plan_context(&conv.bot_id);
                let input = input(conv, &ctx);
                match transition_plan(conv, input, now, &ctx, Plan::default()) {
                    Ok(plan) => Decision::Apply(plan),
                    Err(e) => Decision::Refuse(e),
                }
            }),
        }
    }
}

/// The milliseconds of a bot's pause window.
pub(crate) fn pause_ms(bot: &BotConfig) -> i64 {
    i64::try_from(bot.handover.pause_bot_for.as_millis()).unwrap_or(i64::MAX)
}

/// Applies `input` to the conversation and adds to `plan` the new state, the
/// notices the effects call for (after the messages already in the plan),
/// and the events. A transition that changes nothing adds nothing.
pub(crate) fn transition_plan(
    conv: &Conversation,
    input: Input,
    now: Timestamp,
    ctx: &PlanContext,
    mut plan: Plan,
) -> std::result::Result<Plan, TransitionError> {
    let (next, effects) = step(&conv.state, input, now)?;
    // A bot turn is moot once the bot no longer holds the conversation.
    if next.status != Status::Bot && conv.memory.turn.is_some() {
        plan.side.turn = Some(None);
    }
    if next != conv.state {
        plan.state = Some(next);
    }
    for effect in effects {
        match effect {
            Effect::Emit(kind) => {
                if kind == baton_model::EventKind::Escalated {
                    // A pending contact collector or power-up is moot once a
                    // human is on the way.
                    plan.side.collecting = Some(None);
                    plan.side.power_up = Some(None);
                }
                plan.events.push(kind);
            }
            Effect::Notify(notice) => {
                let text = notice_for(conv, &notice, now, ctx);
                if matches!(notice, Notice::Escalated)
                    && matches!(ctx.handover_notice, HandoverNotice::Queued)
                {
                    plan.queue_position_in = Some(plan.messages.len());
                }
                plan.messages
                    .push(NewMessage::text(SenderKind::System, text));
            }
        }
    }
    Ok(finish(plan))
}

/// The text of a notice to the visitor.
fn notice_for(conv: &Conversation, notice: &Notice, now: Timestamp, ctx: &PlanContext) -> String {
    let bot = &ctx.bot;
    let paused = conv.state.bot_paused_until.is_some_and(|until| now < until);
    match notice {
        Notice::Escalated => match ctx.handover_notice {
            HandoverNotice::Online => bot.handover.online_message.clone(),
            HandoverNotice::Queued => bot.handover.queue_message.clone(),
            HandoverNotice::Offline => bot.handover.offline_message.clone(),
        },
        // Inside the pause window the bot is not back: say who is.
        Notice::AgentLeft { name } if paused => format!(
            "{name} left the conversation. Write here and someone from the team will pick it up."
        ),
        other => notice_text(bot, other),
    }
}

/// The last touches every plan gets: a human or the system speaking starts
/// the bot's trigger counts afresh (as the transcript did before counters
/// were kept).
pub(crate) fn finish(mut plan: Plan) -> Plan {
    // Internal notes are not said to the visitor: they change nothing.
    let hands_change = plan
        .messages
        .iter()
        .any(|m| !m.internal && matches!(m.sender, SenderKind::Agent | SenderKind::System));
    if hands_change {
        plan.side.counters = Some(None);
    }
    plan
}

/// The plan of the bot's messages (with whatever travels along): written
/// only if the bot may still speak, as the lock shows the conversation.
/// This is the one place the who-may-speak rule is applied.
pub(crate) fn bot_plan(
    conv: &Conversation,
    now: Timestamp,
    messages: Vec<NewMessage>,
    side: Side,
) -> Decision {
    if !bot_may_speak(&conv.state, now) {
        return Decision::Skip(Skip::Dropped);
    }
    let mut side = side;
    // The bot has spoken: the turn due is done.
    if conv.memory.turn.is_some() {
        side.turn = Some(None);
    }
    Decision::Apply(finish(Plan {
        messages,
        side,
        ..Plan::default()
    }))
}

/// The events a commit wrote, by kind, for those who care about transitions.
pub(crate) fn frees_a_seat(events: &[StoredEvent]) -> bool {
    use baton_model::EventKind::*;
    events.iter().any(|e| {
        matches!(
            e.envelope.kind,
            Released | Resolved | Unclaimed | Transferred | Abandoned
        )
    })
}

/// The system message a visitor sees for a notice.
pub fn notice_text(bot: &BotConfig, notice: &Notice) -> String {
    match notice {
        Notice::Escalated => bot.handover.online_message.clone(),
        Notice::AgentJoined { name } => format!("{name} joined the conversation"),
        Notice::AgentLeft { name } => {
            format!(
                "{name} left the conversation. {} is back to help.",
                bot.name
            )
        }
        Notice::TransferredTo { name } => format!("You are now talking with {name}"),
        Notice::Requeued => {
            "You are back in the queue; the next available person will be with you shortly."
                .to_owned()
        }
        Notice::Resolved => "This conversation was marked as resolved.".to_owned(),
    }
}
