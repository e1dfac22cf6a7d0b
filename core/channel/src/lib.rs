//! The one trait every Baton channel implements.
//!
//! A channel turns a platform's payloads into [`Inbound`] messages
//! (`normalize`, pure), hands them to the runtime through [`Ingest`], delivers
//! the runtime's outbound messages back to the platform (`deliver`), and may
//! mount webhook routes (`routes`) or run a receive loop (`run`: long polling,
//! a gateway, IMAP IDLE).
//!
//! A channel that is also an agent console (Slack) watches every committed
//! event (`observe`) and acts for staff through [`Ingest`]'s desk methods:
//! claim, hand back, resolve and reply, always through the runtime.
//!
//! Architecture invariant: a channel never decides who may speak and never
//! touches the database. It reports what arrived and delivers what it is
//! given; the runtime applies the hand-over state machine and the
//! who-may-speak rule in one place for every channel. This crate depends on
//! the model only, so channel crates build without the runtime.

use async_trait::async_trait;
use baton_model::wire::EventEnvelope;
use baton_model::{AgentRef, Attachment, ChannelKind, Conversation, Message};
use std::sync::Arc;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The payload is not something this channel understands; nothing was stored.
    #[error("cannot read {channel} payload: {reason}")]
    Malformed {
        channel: ChannelKind,
        reason: String,
    },
    /// The platform refused or could not be reached; the runtime may retry.
    #[error("cannot deliver to {channel}: {reason}")]
    Delivery {
        channel: ChannelKind,
        reason: String,
        /// Seconds the platform asked us to wait (HTTP 429 `Retry-After`).
        retry_after: Option<u64>,
    },
    /// The platform refused the message for good (an unknown chat, a
    /// conversation with no place on the platform): trying again cannot
    /// help, and the message is marked not delivered.
    #[error("{channel} refused the message: {reason}")]
    Rejected {
        channel: ChannelKind,
        reason: String,
    },
    /// The runtime said no to a staff action (a lost claim, a bad transition).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

/// The button id a channel sends for "start" commands (Telegram's `/start`):
/// it opens the conversation (the bot greets) and stores no message.
pub const START_ACTION: &str = "start";

/// Who sent an inbound message, as the platform identifies them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboundSender {
    /// The platform's stable id for the person (user id, email address, visitor id).
    pub external_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// A visitor's message (or button press), normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub channel: ChannelKind,
    /// The conversation, when the channel already knows it (the web widget does).
    pub conversation_id: Option<String>,
    /// The platform's key for the thread (a chat id, an email thread); finds or
    /// starts the conversation when `conversation_id` is absent.
    pub thread_key: String,
    pub sender: InboundSender,
    pub text: String,
    pub attachments: Vec<Attachment>,
    /// The id of a pressed button (a quick reply or `request_human`), if any.
    pub action: Option<String>,
    /// The client's or platform's id for this message; a repeat is stored once.
    pub client_id: Option<String>,
    pub channel_message_id: Option<String>,
    /// Stored, never answered: an auto-reply, a bounce, bulk mail. The
    /// runtime keeps it in the conversation without a state change, without a
    /// bot turn and without a greeting, so no machine ever talks to another.
    pub no_reply: bool,
}

/// A raw payload as it arrived, plus what the transport already told us.
#[derive(Clone, Debug, Default)]
pub struct RawInbound {
    /// The thread the transport routed it to (the web widget's conversation id).
    pub thread_hint: Option<String>,
    pub body: Vec<u8>,
}

/// What happened to an inbound message.
#[derive(Clone, Debug)]
pub struct Ingested {
    pub conversation: Conversation,
    /// The stored message (the earlier copy when this was a repeat).
    pub message: Option<Message>,
    pub duplicate: bool,
}

/// What a staff member does from a console (Slack's buttons and thread replies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentAct {
    Claim,
    HandBack,
    Resolve,
    /// A reply to the visitor; claims implicitly where the lifecycle allows.
    /// `client_id` makes a redelivered reply count once.
    Reply {
        text: String,
        client_id: Option<String>,
    },
}

/// The runtime, as a channel sees it.
#[async_trait]
pub trait Ingest: Send + Sync {
    async fn ingest(&self, inbound: Inbound) -> Result<Ingested>;

    /// Whether a conversation already lives on this platform thread (Discord
    /// asks before taking a message in a thread it may not have opened).
    async fn has_thread(&self, channel: ChannelKind, thread_key: &str) -> Result<bool>;

    /// The staff member who signs in with this email, if any.
    async fn staff_by_email(&self, email: &str) -> Result<Option<AgentRef>>;

    /// A staff action, with the same rules as in the web inbox. A lost claim is
    /// [`Error::Refused`] with "already claimed by <name>".
    async fn agent_act(
        &self,
        conversation_id: &str,
        agent: &AgentRef,
        act: AgentAct,
    ) -> Result<Conversation>;

    async fn conversation(&self, conversation_id: &str) -> Result<Option<Conversation>>;

    /// The last `n` messages that are not internal notes, oldest first.
    async fn recent_messages(&self, conversation_id: &str, n: usize) -> Result<Vec<Message>>;

    /// Remembers that a conversation has this external object on a console
    /// (the Slack message that stands for it), both ways, across restarts.
    async fn link(&self, console: &str, conversation_id: &str, external: &str) -> Result<()>;

    /// The conversation linked to an external object on a console.
    async fn linked_conversation(&self, console: &str, external: &str) -> Result<Option<String>>;

    /// The external object a conversation is linked to on a console.
    async fn conversation_link(
        &self,
        console: &str,
        conversation_id: &str,
    ) -> Result<Option<String>>;

    /// A value the channel stored under `key` (a mailbox cursor, which
    /// conversation a Message-ID belongs to), across restarts.
    async fn state(&self, channel: ChannelKind, key: &str) -> Result<Option<String>>;

    /// Stores or replaces a value under `key`.
    async fn set_state(&self, channel: ChannelKind, key: &str, value: &str) -> Result<()>;

    /// A notice from the team to the visitor (a refused attachment), stored in
    /// the conversation and delivered like any other system message.
    async fn notice(&self, conversation_id: &str, text: &str) -> Result<()>;
}

/// A message the runtime wants on the platform.
#[derive(Clone, Copy, Debug)]
pub struct Outbound<'a> {
    pub conversation: &'a Conversation,
    /// The platform's thread key the conversation was started with.
    pub thread_key: Option<&'a str>,
    pub message: &'a Message,
}

/// What delivery did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// The platform accepted it, under this id.
    Sent { platform_id: Option<String> },
    /// The channel's clients pick messages up from the event stream themselves.
    ViaEventStream,
}

/// A channel: one crate, one config struct, one impl of this trait.
#[async_trait]
pub trait Channel: Send + Sync + 'static {
    fn kind(&self) -> ChannelKind;

    /// Turns one platform payload into zero or more inbound messages. Pure: no IO.
    /// Events that carry no visitor message (a typing notice, an edit) give none.
    fn normalize(&self, raw: &RawInbound) -> Result<Vec<Inbound>>;

    /// Sends a bot, agent or system message to the platform.
    async fn deliver(&self, out: Outbound<'_>) -> Result<Delivered>;

    /// Whether the channel's clients pick messages up from the event stream
    /// themselves (the widget): then [`Channel::deliver`] has nothing to do
    /// and the runtime queues nothing for it.
    fn reads_event_stream(&self) -> bool {
        false
    }

    /// Routes the platform calls (webhooks), mounted under `/api/v1/channels/<kind>/`.
    fn routes(&self, _ingest: Arc<dyn Ingest>) -> Option<axum::Router> {
        None
    }

    /// The receive loop (long polling, a gateway connection), if the channel has one.
    /// Returns when the channel stops for good; the runtime logs why.
    async fn run(&self, _ingest: Arc<dyn Ingest>) -> Result<()> {
        Ok(())
    }

    /// Whether [`Channel::observe`] wants every committed event (an agent console).
    fn observes_events(&self) -> bool {
        false
    }

    /// One committed event of any channel, in commit order, on one node only.
    /// Errors are logged; the event is not retried.
    async fn observe(&self, _event: &EventEnvelope, _ingest: Arc<dyn Ingest>) -> Result<()> {
        Ok(())
    }
}

/// An error body in the shape of the rest of the API:
/// `{"error":{"code","message"}}`, for channel routes.
pub fn error_response(
    status: axum::http::StatusCode,
    code: &str,
    message: impl Into<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({"error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Exponential back-off for reconnecting: 1 s, 2 s, 4 s … up to 60 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: std::time::Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: std::time::Duration = std::time::Duration::from_secs(1);
    const MAX: std::time::Duration = std::time::Duration::from_secs(60);

    /// The wait before the next attempt; each call doubles the one after.
    pub fn next_wait(&mut self) -> std::time::Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }

    /// A success: the next failure waits the shortest time again.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// How many times a call is tried when the platform says "too many
/// requests"; each try waits what the platform asked (capped at a minute).
pub const DELIVERY_ATTEMPTS: u32 = 5;

/// Calls a platform, waiting out "too many requests" answers: `wait_of`
/// tells how long an error asks to wait (`None`: it is not a rate limit, and
/// the call fails at once). Errors name `what` was called.
pub async fn retry_rate_limited<T, E, F, Fut>(
    channel: ChannelKind,
    what: &str,
    f: F,
    wait_of: impl Fn(&E) -> Option<std::time::Duration>,
) -> Result<T>
where
    E: std::fmt::Display,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let cap = std::time::Duration::from_secs(60);
    let mut last = None;
    for _ in 0..DELIVERY_ATTEMPTS {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => match wait_of(&e) {
                Some(wait) => {
                    let wait = wait.min(cap);
                    tokio::time::sleep(wait).await;
                    last = Some(wait);
                }
                None => {
                    return Err(Error::Delivery {
                        channel,
                        reason: format!("{what}: {e}"),
                        retry_after: None,
                    });
                }
            },
        }
    }
    Err(Error::Delivery {
        channel,
        reason: format!("{what}: still rate limited"),
        retry_after: last.map(|d| d.as_secs()),
    })
}

/// The text a platform without per-message sender names shows for a message:
/// agents' replies carry their name ("Alice: …"), attachments become links.
pub fn display_text(message: &Message) -> String {
    let mut text = match (&message.sender, &message.author) {
        (baton_model::SenderKind::Agent, Some(author)) => {
            format!("{}: {}", author.name, message.text)
        }
        _ => message.text.clone(),
    };
    for a in &message.attachments {
        match &a.url {
            Some(url) => text.push_str(&format!("\n📎 {}: {url}", a.name)),
            None => text.push_str(&format!("\n📎 {}", a.name)),
        }
    }
    text
}
