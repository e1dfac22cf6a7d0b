//! The one trait every Baton channel implements.
//!
//! A channel turns a platform's payloads into [`Inbound`] messages
//! (`normalize`, pure), hands them to the runtime through [`Ingest`], delivers
//! the runtime's outbound messages back to the platform (`deliver`), and may
//! mount webhook routes (`routes`) or run a receive loop (`run`: long polling,
//! a gateway, IMAP IDLE).
//!
//! Architecture invariant: a channel never decides who may speak and never
//! touches the database. It reports what arrived and delivers what it is
//! given; the runtime applies the hand-over state machine and the
//! who-may-speak rule in one place for every channel. This crate depends on
//! the model only, so channel crates build without the runtime.

use async_trait::async_trait;
use baton_model::{Attachment, ChannelKind, Conversation, Message};
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
    #[error("{0}")]
    Other(String),
}

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

/// The runtime, as a channel sees it.
#[async_trait]
pub trait Ingest: Send + Sync {
    async fn ingest(&self, inbound: Inbound) -> Result<Ingested>;
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

    /// Routes the platform calls (webhooks), mounted under `/api/v1/channels/<kind>/`.
    fn routes(&self, _ingest: Arc<dyn Ingest>) -> Option<axum::Router> {
        None
    }

    /// The receive loop (long polling, a gateway connection), if the channel has one.
    /// Returns when the channel stops for good; the runtime logs why.
    async fn run(&self, _ingest: Arc<dyn Ingest>) -> Result<()> {
        Ok(())
    }
}
