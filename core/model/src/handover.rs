//! The sans-IO hand-over state machine and the one *who-may-speak* rule.
//!
//! [`step`] takes the current [`HandoverState`], one [`Input`] and the current
//! time, and returns the next state plus the [`Effect`]s the caller must carry
//! out (append a system message, record an event). It never fails for reasons
//! of IO because it does none; it fails only when the lifecycle forbids the
//! input ([`TransitionError`]).
//!
//! Invariants held by the property tests at the bottom of this file:
//! - the bot may speak only when the status is `bot` and the pause window has
//!   closed ([`bot_may_speak`] is the only place this is decided);
//! - a conversation has at most one assignee, and `active` iff it has one;
//! - every `waiting` or `active` conversation carries a hand-over reason;
//! - every transition emits exactly one [`Effect::Emit`]; a no-op emits nothing.

use crate::model::Status;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a conversation was handed to a human: a reason code kept for reports.
///
/// The well-known codes are constants; plugins add `plugin:<id>` and API
/// clients may name their own snake_case code.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reason(String);

impl Reason {
    pub const VISITOR_REQUEST: &'static str = "visitor_request";
    pub const BOT_FAILURE: &'static str = "bot_failure";
    pub const LACK_OF_INFORMATION: &'static str = "lack_of_information";
    pub const FAILED_TO_RESOLVE: &'static str = "failed_to_resolve";
    pub const FRUSTRATION: &'static str = "frustration";
    pub const INTENT: &'static str = "intent";
    pub const AGENT_TAKEOVER: &'static str = "agent_takeover";
    pub const MANUAL: &'static str = "manual";

    /// Accepts 1 to 80 characters of `a-z`, `0-9`, `_`, `-`, `.` and `:`,
    /// starting with a letter: readable in reports, safe in CSV and URLs.
    pub fn new(code: impl Into<String>) -> Result<Self, InvalidReason> {
        let code = code.into();
        let ok_char = |c: char| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.' | ':')
        };
        let starts_with_letter = code.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if (1..=80).contains(&code.len()) && starts_with_letter && code.chars().all(ok_char) {
            Ok(Self(code))
        } else {
            Err(InvalidReason(code.chars().take(80).collect()))
        }
    }

    /// A reason code that is known to be valid (one of the constants above).
    pub fn known(code: &'static str) -> Self {
        Self(code.to_owned())
    }

    /// The reason a trigger plugin's verdict carries: `plugin:<manifest id>`.
    pub fn plugin(id: &str) -> Result<Self, InvalidReason> {
        Self::new(format!("plugin:{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Reason {
    type Error = InvalidReason;
    fn try_from(s: String) -> Result<Self, InvalidReason> {
        Self::new(s)
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> String {
        r.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid reason `{0}`: use 1 to 80 lowercase letters, digits, `_`, `-`, `.` or `:`, starting with a letter"
)]
pub struct InvalidReason(pub String);

/// A staff member as the state machine needs them: who they are and what the visitor is told.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgentRef {
    pub id: String,
    pub name: String,
}

/// The hand-over record: why, when and by whom the conversation went to a human.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverRecord {
    pub reason: Reason,
    pub at: Timestamp,
    /// The staff member who caused it, if one did (a takeover, a manual escalation).
    pub by: Option<String>,
}

/// The part of a conversation the hand-over lifecycle governs.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HandoverState {
    pub status: Status,
    pub assignee: Option<AgentRef>,
    pub department: Option<String>,
    pub handover: Option<HandoverRecord>,
    /// Until this instant the bot stays silent, whatever the status (seed 002's bot pause).
    pub bot_paused_until: Option<Timestamp>,
    pub escalated_at: Option<Timestamp>,
    pub claimed_at: Option<Timestamp>,
    pub first_agent_reply_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
}

// `Status` is declared by a macro shared with other enums, so the default is written out.
#[allow(clippy::derivable_impls)]
impl Default for Status {
    fn default() -> Self {
        Status::Bot
    }
}

/// Where a transfer sends a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferTarget {
    /// Stays `active`, with a new assignee.
    Agent(AgentRef),
    /// Goes back to `waiting`, queued for that department.
    Department(String),
}

/// Something that happened to a conversation, as the state machine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The visitor wrote. Reopens a resolved conversation.
    VisitorMessage,
    /// Hand the conversation to a human (bot → waiting).
    Escalate {
        reason: Reason,
        by: Option<String>,
        department: Option<String>,
        /// Length of the bot pause window opened now, in milliseconds; zero for none.
        pause_bot_for_ms: i64,
    },
    /// An agent takes the conversation. From `bot` this is "stop the bot and join".
    Claim {
        agent: AgentRef,
        pause_bot_for_ms: i64,
    },
    /// An agent wrote to the visitor (not an internal note). Claims implicitly where allowed.
    AgentMessage {
        agent: AgentRef,
        pause_bot_for_ms: i64,
    },
    /// The agent is done; the bot resumes (active → resolved).
    HandBack {
        by: AgentRef,
    },
    /// Close the conversation from any open status.
    Resolve {
        by: Option<AgentRef>,
    },
    Transfer {
        to: TransferTarget,
    },
    /// Put a claimed conversation back in the queue (active → waiting).
    Unclaim {
        by: AgentRef,
    },
    /// Nobody claimed it in time (waiting → resolved).
    Abandon,
}

impl Input {
    pub fn name(&self) -> &'static str {
        match self {
            Input::VisitorMessage => "visitor message",
            Input::Escalate { .. } => "escalate",
            Input::Claim { .. } => "claim",
            Input::AgentMessage { .. } => "agent message",
            Input::HandBack { .. } => "hand back",
            Input::Resolve { .. } => "resolve",
            Input::Transfer { .. } => "transfer",
            Input::Unclaim { .. } => "unclaim",
            Input::Abandon => "abandon",
        }
    }
}

/// The lifecycle event a transition records (the webhook `type`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "conversation.started")]
    Started,
    #[serde(rename = "conversation.escalated")]
    Escalated,
    #[serde(rename = "conversation.claimed")]
    Claimed,
    #[serde(rename = "conversation.released")]
    Released,
    #[serde(rename = "conversation.unclaimed")]
    Unclaimed,
    #[serde(rename = "conversation.transferred")]
    Transferred,
    #[serde(rename = "conversation.resolved")]
    Resolved,
    #[serde(rename = "conversation.reopened")]
    Reopened,
    #[serde(rename = "conversation.abandoned")]
    Abandoned,
    #[serde(rename = "message.created")]
    MessageCreated,
}

impl EventKind {
    pub const ALL: &'static [EventKind] = &[
        EventKind::Started,
        EventKind::Escalated,
        EventKind::Claimed,
        EventKind::Released,
        EventKind::Unclaimed,
        EventKind::Transferred,
        EventKind::Resolved,
        EventKind::Reopened,
        EventKind::Abandoned,
        EventKind::MessageCreated,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "conversation.started",
            EventKind::Escalated => "conversation.escalated",
            EventKind::Claimed => "conversation.claimed",
            EventKind::Released => "conversation.released",
            EventKind::Unclaimed => "conversation.unclaimed",
            EventKind::Transferred => "conversation.transferred",
            EventKind::Resolved => "conversation.resolved",
            EventKind::Reopened => "conversation.reopened",
            EventKind::Abandoned => "conversation.abandoned",
            EventKind::MessageCreated => "message.created",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the visitor is told, as a system message, when a transition happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The conversation was handed over; a human is coming.
    Escalated,
    AgentJoined {
        name: String,
    },
    AgentLeft {
        name: String,
    },
    /// Transferred to another agent.
    TransferredTo {
        name: String,
    },
    /// Back in the queue (unclaimed, or transferred to a department).
    Requeued,
    Resolved,
}

/// What the caller must do after a transition. Effects are listed in the order to apply them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Record this lifecycle event (outbox, webhooks, live fan-out).
    Emit(EventKind),
    /// Append a system message telling the visitor.
    Notify(Notice),
}

/// Why an input was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("Already claimed by {}", by.name)]
    AlreadyClaimed { by: AgentRef },
    #[error("cannot {input} a conversation whose status is {from}")]
    Invalid { from: Status, input: &'static str },
}

/// The who-may-speak rule: the bot replies only in `bot` status, once any pause window has closed.
///
/// This is the only place the decision is made; the runtime evaluates it under
/// the conversation's row lock right before storing a bot message.
pub fn bot_may_speak(state: &HandoverState, now: Timestamp) -> bool {
    state.status == Status::Bot && state.bot_paused_until.is_none_or(|until| now >= until)
}

/// Applies one input to a state. Pure: the same arguments always give the same answer.
pub fn step(
    state: &HandoverState,
    input: Input,
    now: Timestamp,
) -> Result<(HandoverState, Vec<Effect>), TransitionError> {
    use Effect::{Emit, Notify};
    use Status::{Active, Bot, Resolved, Waiting};

    let invalid = |input: &Input| TransitionError::Invalid {
        from: state.status,
        input: input.name(),
    };
    let mut next = state.clone();
    let effects = match (state.status, input) {
        (Resolved, Input::VisitorMessage) => {
            next.assignee = None;
            next.resolved_at = None;
            next.claimed_at = None;
            next.first_agent_reply_at = None;
            // Inside a pause window the bot must stay quiet, so the message goes
            // to the inbox instead: the conversation reopens as waiting.
            if state.bot_paused_until.is_some_and(|until| now < until) && state.handover.is_some() {
                next.status = Waiting;
                next.escalated_at = Some(now);
            } else {
                next.status = Bot;
                next.handover = None;
                next.department = None;
                next.escalated_at = None;
            }
            vec![Emit(EventKind::Reopened)]
        }
        (_, Input::VisitorMessage) => vec![],

        (
            Bot,
            Input::Escalate {
                reason,
                by,
                department,
                pause_bot_for_ms,
            },
        ) => {
            next.status = Waiting;
            next.handover = Some(HandoverRecord {
                reason,
                at: now,
                by,
            });
            if department.is_some() {
                next.department = department;
            }
            next.escalated_at = Some(now);
            open_pause(&mut next, now, pause_bot_for_ms);
            vec![Emit(EventKind::Escalated), Notify(Notice::Escalated)]
        }
        (_, input @ Input::Escalate { .. }) => return Err(invalid(&input)),

        (
            Bot | Waiting | Active | Resolved,
            Input::Claim {
                agent,
                pause_bot_for_ms,
            },
        ) => return claim(state, next, agent, pause_bot_for_ms, now, "claim"),

        (
            _,
            Input::AgentMessage {
                agent,
                pause_bot_for_ms,
            },
        ) => {
            if state.status == Active && state.assignee.as_ref() == Some(&agent) {
                if state.first_agent_reply_at.is_none() {
                    next.first_agent_reply_at = Some(now);
                }
                // Recording the first reply is bookkeeping, not a transition.
                return Ok((next, vec![]));
            }
            let (mut claimed, effects) =
                claim(state, next, agent, pause_bot_for_ms, now, "reply to")?;
            claimed.first_agent_reply_at = Some(now);
            return Ok((claimed, effects));
        }

        (Active, Input::HandBack { by }) => {
            let name = state.assignee.as_ref().map_or(by.name, |a| a.name.clone());
            next.status = Resolved;
            next.assignee = None;
            next.resolved_at = Some(now);
            vec![
                Emit(EventKind::Released),
                Notify(Notice::AgentLeft { name }),
            ]
        }
        (_, input @ Input::HandBack { .. }) => return Err(invalid(&input)),

        (Bot | Waiting | Active, Input::Resolve { .. }) => {
            next.status = Resolved;
            next.assignee = None;
            next.resolved_at = Some(now);
            vec![Emit(EventKind::Resolved), Notify(Notice::Resolved)]
        }
        (_, input @ Input::Resolve { .. }) => return Err(invalid(&input)),

        (
            Active,
            Input::Transfer {
                to: TransferTarget::Agent(agent),
            },
        ) => {
            if state.assignee.as_ref() == Some(&agent) {
                return Ok((next, vec![]));
            }
            let name = agent.name.clone();
            next.assignee = Some(agent);
            next.claimed_at = Some(now);
            vec![
                Emit(EventKind::Transferred),
                Notify(Notice::TransferredTo { name }),
            ]
        }
        (
            Waiting,
            Input::Transfer {
                to: TransferTarget::Agent(agent),
            },
        ) => {
            let name = agent.name.clone();
            next.status = Active;
            next.assignee = Some(agent);
            next.claimed_at = Some(now);
            vec![
                Emit(EventKind::Transferred),
                Notify(Notice::TransferredTo { name }),
            ]
        }
        (
            Waiting,
            Input::Transfer {
                to: TransferTarget::Department(dept),
            },
        ) if state.department.as_deref() == Some(dept.as_str()) => {
            return Ok((next, vec![]));
        }
        (
            Waiting | Active,
            Input::Transfer {
                to: TransferTarget::Department(dept),
            },
        ) => {
            next.status = Waiting;
            next.assignee = None;
            next.claimed_at = None;
            next.department = Some(dept);
            next.escalated_at = Some(now);
            vec![Emit(EventKind::Transferred), Notify(Notice::Requeued)]
        }
        (_, input @ Input::Transfer { .. }) => return Err(invalid(&input)),

        (Active, Input::Unclaim { .. }) => {
            next.status = Waiting;
            next.assignee = None;
            next.claimed_at = None;
            next.escalated_at = Some(now);
            vec![Emit(EventKind::Unclaimed), Notify(Notice::Requeued)]
        }
        (_, input @ Input::Unclaim { .. }) => return Err(invalid(&input)),

        (Waiting, Input::Abandon) => {
            next.status = Resolved;
            next.resolved_at = Some(now);
            vec![Emit(EventKind::Abandoned)]
        }
        (_, input @ Input::Abandon) => return Err(invalid(&input)),
    };
    Ok((next, effects))
}

/// A claim: one winner, idempotent for the holder, "stop the bot and join" from `bot`.
fn claim(
    state: &HandoverState,
    mut next: HandoverState,
    agent: AgentRef,
    pause_bot_for_ms: i64,
    now: Timestamp,
    verb: &'static str,
) -> Result<(HandoverState, Vec<Effect>), TransitionError> {
    match state.status {
        Status::Active => match &state.assignee {
            Some(holder) if holder.id == agent.id => Ok((next, vec![])),
            Some(holder) => Err(TransitionError::AlreadyClaimed { by: holder.clone() }),
            // Unreachable while the invariants hold; refuse rather than guess.
            None => Err(TransitionError::Invalid {
                from: state.status,
                input: verb,
            }),
        },
        Status::Resolved => Err(TransitionError::Invalid {
            from: state.status,
            input: verb,
        }),
        Status::Bot | Status::Waiting => {
            if state.status == Status::Bot {
                // Stopping the bot is itself a hand-over, with its own reason.
                next.handover = Some(HandoverRecord {
                    reason: Reason::known(Reason::AGENT_TAKEOVER),
                    at: now,
                    by: Some(agent.id.clone()),
                });
                next.escalated_at = Some(now);
                open_pause(&mut next, now, pause_bot_for_ms);
            }
            let name = agent.name.clone();
            next.status = Status::Active;
            next.assignee = Some(agent);
            next.claimed_at = Some(now);
            Ok((
                next,
                vec![
                    Effect::Emit(EventKind::Claimed),
                    Effect::Notify(Notice::AgentJoined { name }),
                ],
            ))
        }
    }
}

fn open_pause(next: &mut HandoverState, now: Timestamp, pause_bot_for_ms: i64) {
    if pause_bot_for_ms > 0 {
        next.bot_paused_until = Some(now.plus_millis(pause_bot_for_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn agent(id: &str) -> AgentRef {
        AgentRef {
            id: id.to_owned(),
            name: id.to_uppercase(),
        }
    }

    fn escalate(reason: &'static str) -> Input {
        Input::Escalate {
            reason: Reason::known(reason),
            by: None,
            department: None,
            pause_bot_for_ms: 0,
        }
    }

    fn claim_by(id: &str) -> Input {
        Input::Claim {
            agent: agent(id),
            pause_bot_for_ms: 0,
        }
    }

    fn run(inputs: Vec<Input>) -> Result<HandoverState, TransitionError> {
        let mut state = HandoverState::default();
        for (i, input) in inputs.into_iter().enumerate() {
            state = step(&state, input, Timestamp(i as i64 * 1000))?.0;
        }
        Ok(state)
    }

    #[test]
    fn the_happy_path_escalate_claim_hand_back_reopen() {
        let s0 = HandoverState::default();
        let (s1, e1) = step(&s0, escalate(Reason::VISITOR_REQUEST), Timestamp(1)).unwrap();
        assert_eq!(s1.status, Status::Waiting);
        assert_eq!(
            e1,
            [
                Effect::Emit(EventKind::Escalated),
                Effect::Notify(Notice::Escalated)
            ]
        );
        let (s2, e2) = step(&s1, claim_by("alice"), Timestamp(2)).unwrap();
        assert_eq!(s2.status, Status::Active);
        assert_eq!(
            e2[1],
            Effect::Notify(Notice::AgentJoined {
                name: "ALICE".into()
            })
        );
        let (s3, e3) = step(&s2, Input::HandBack { by: agent("alice") }, Timestamp(3)).unwrap();
        assert_eq!(s3.status, Status::Resolved);
        assert_eq!(
            e3[1],
            Effect::Notify(Notice::AgentLeft {
                name: "ALICE".into()
            })
        );
        assert!(!bot_may_speak(&s3, Timestamp(3)));
        let (s4, e4) = step(&s3, Input::VisitorMessage, Timestamp(4)).unwrap();
        assert_eq!(s4.status, Status::Bot);
        assert_eq!(e4, [Effect::Emit(EventKind::Reopened)]);
        assert!(bot_may_speak(&s4, Timestamp(4)));
    }

    #[test]
    fn a_second_claim_loses_to_the_first_and_names_the_winner() {
        let state = run(vec![escalate(Reason::MANUAL), claim_by("alice")]).unwrap();
        let err = step(&state, claim_by("bob"), Timestamp(9)).unwrap_err();
        assert_eq!(err.to_string(), "Already claimed by ALICE");
        // The holder claiming again is a no-op, not an error.
        let (same, effects) = step(&state, claim_by("alice"), Timestamp(9)).unwrap();
        assert_eq!((same, effects), (state, vec![]));
    }

    #[test]
    fn claiming_a_bot_conversation_is_a_takeover_with_its_own_reason() {
        let (state, _) = step(&HandoverState::default(), claim_by("alice"), Timestamp(5)).unwrap();
        assert_eq!(state.status, Status::Active);
        let record = state.handover.unwrap();
        assert_eq!(record.reason.as_str(), Reason::AGENT_TAKEOVER);
        assert_eq!(record.by.as_deref(), Some("alice"));
    }

    #[test]
    fn an_agent_message_in_a_bot_conversation_claims_it() {
        let input = Input::AgentMessage {
            agent: agent("alice"),
            pause_bot_for_ms: 0,
        };
        let (state, effects) = step(&HandoverState::default(), input, Timestamp(5)).unwrap();
        assert_eq!(state.status, Status::Active);
        assert_eq!(state.first_agent_reply_at, Some(Timestamp(5)));
        assert_eq!(effects[0], Effect::Emit(EventKind::Claimed));
    }

    #[test]
    fn invalid_transitions_say_what_and_from_where() {
        let resolved = run(vec![Input::Resolve { by: None }]).unwrap();
        let err = step(&resolved, claim_by("alice"), Timestamp(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot claim a conversation whose status is resolved"
        );
        let err = step(
            &HandoverState::default(),
            Input::HandBack { by: agent("a") },
            Timestamp(1),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot hand back a conversation whose status is bot"
        );
    }

    #[test]
    fn the_pause_window_outlives_a_hand_back_and_routes_a_reopen_to_the_inbox() {
        let pause = Input::Escalate {
            reason: Reason::known(Reason::VISITOR_REQUEST),
            by: None,
            department: None,
            pause_bot_for_ms: 60_000,
        };
        let s = step(&HandoverState::default(), pause, Timestamp(0))
            .unwrap()
            .0;
        let s = step(&s, claim_by("alice"), Timestamp(1)).unwrap().0;
        let s = step(&s, Input::HandBack { by: agent("alice") }, Timestamp(2))
            .unwrap()
            .0;
        let (reopened, _) = step(&s, Input::VisitorMessage, Timestamp(3)).unwrap();
        assert_eq!(reopened.status, Status::Waiting);
        assert!(!bot_may_speak(&reopened, Timestamp(3)));
        // After the window a reopen goes back to the bot, which may speak.
        let (later, _) = step(&s, Input::VisitorMessage, Timestamp(60_000)).unwrap();
        assert_eq!(later.status, Status::Bot);
        assert!(bot_may_speak(&later, Timestamp(60_000)));
        assert!(!bot_may_speak(&later, Timestamp(59_999)));
    }

    #[test]
    fn reasons_are_validated() {
        assert!(Reason::new("billing_dispute").is_ok());
        assert!(Reason::plugin("vip-trigger").is_ok());
        assert!(Reason::new("").is_err());
        assert!(Reason::new("Drop Table").is_err());
        assert!(Reason::new("1abc").is_err());
    }

    fn arb_agent() -> impl Strategy<Value = AgentRef> {
        prop_oneof![
            Just(agent("alice")),
            Just(agent("bob")),
            Just(agent("carol"))
        ]
    }

    fn arb_input() -> impl Strategy<Value = Input> {
        let reason = prop_oneof![
            Just(Reason::VISITOR_REQUEST),
            Just(Reason::BOT_FAILURE),
            Just(Reason::FRUSTRATION),
        ];
        let pause = prop_oneof![Just(0i64), 1i64..5_000];
        prop_oneof![
            Just(Input::VisitorMessage),
            (reason, pause.clone(), proptest::option::of("[a-c]")).prop_map(|(r, p, d)| {
                Input::Escalate {
                    reason: Reason::known(r),
                    by: None,
                    department: d,
                    pause_bot_for_ms: p,
                }
            }),
            (arb_agent(), pause.clone()).prop_map(|(agent, p)| Input::Claim {
                agent,
                pause_bot_for_ms: p
            }),
            (arb_agent(), pause).prop_map(|(agent, p)| Input::AgentMessage {
                agent,
                pause_bot_for_ms: p
            }),
            arb_agent().prop_map(|by| Input::HandBack { by }),
            proptest::option::of(arb_agent()).prop_map(|by| Input::Resolve { by }),
            arb_agent().prop_map(|a| Input::Transfer {
                to: TransferTarget::Agent(a)
            }),
            "[a-c]".prop_map(|d| Input::Transfer {
                to: TransferTarget::Department(d)
            }),
            arb_agent().prop_map(|by| Input::Unclaim { by }),
            Just(Input::Abandon),
        ]
    }

    fn check_invariants(state: &HandoverState, now: Timestamp) {
        // Who may speak: never outside `bot`, never inside the pause window.
        if bot_may_speak(state, now) {
            assert_eq!(state.status, Status::Bot);
            assert!(state.bot_paused_until.is_none_or(|u| now >= u));
        }
        // At most one assignee, and `active` exactly when there is one.
        assert_eq!(state.status == Status::Active, state.assignee.is_some());
        // Every hand-over carries a reason.
        if matches!(state.status, Status::Waiting | Status::Active) {
            assert!(
                state.handover.is_some(),
                "{state:?} has no hand-over record"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn invariants_hold_for_any_sequence(
            inputs in proptest::collection::vec((arb_input(), 0i64..3_000), 0..40)
        ) {
            let mut state = HandoverState::default();
            let mut now = Timestamp(0);
            for (input, dt) in inputs {
                now = now.plus_millis(dt);
                match step(&state, input.clone(), now) {
                    Ok((next, effects)) => {
                        let emits = effects.iter().filter(|e| matches!(e, Effect::Emit(_))).count();
                        let changed = next.status != state.status
                            || next.assignee != state.assignee
                            || next.department != state.department;
                        // Every transition emits exactly one event; a no-op emits none.
                        prop_assert_eq!(emits, usize::from(changed), "{:?} -> {:?}", state, next);
                        if !changed {
                            prop_assert!(effects.is_empty());
                        }
                        state = next;
                    }
                    Err(TransitionError::AlreadyClaimed { by }) => {
                        // Only a held conversation refuses a claim, and it names its holder.
                        prop_assert_eq!(state.status, Status::Active);
                        prop_assert_eq!(Some(&by), state.assignee.as_ref());
                    }
                    Err(TransitionError::Invalid { from, .. }) => {
                        prop_assert_eq!(from, state.status);
                    }
                }
                check_invariants(&state, now);
                // The who-may-speak rule holds at any later instant too.
                check_invariants(&state, now.plus_millis(10_000));
            }
        }

        #[test]
        fn of_many_claimants_exactly_one_wins(claimants in proptest::collection::vec(arb_agent(), 1..10)) {
            let start = run(vec![escalate(Reason::MANUAL)]).unwrap();
            let mut state = start;
            let mut winners = Vec::new();
            for agent in claimants {
                let input = Input::Claim { agent: agent.clone(), pause_bot_for_ms: 0 };
                if let Ok((next, effects)) = step(&state, input, Timestamp(1)) {
                    if !effects.is_empty() {
                        winners.push(agent);
                    }
                    state = next;
                }
            }
            prop_assert_eq!(winners.len(), 1);
            prop_assert_eq!(state.assignee.as_ref(), winners.first());
        }
    }
}
