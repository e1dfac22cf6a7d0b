//! Baton's engine: it applies the hand-over state machine to stored
//! conversations, asks the bot, fans events out and delivers webhooks.
//!
//! Every change to a conversation goes through [`Runtime`] as one unit of
//! work: the store reads the conversation under its lock (the single
//! writer on SQLite, `FOR UPDATE` on PostgreSQL), the unit's plan asks
//! `baton_model::step` what the input does, and the new state, its
//! messages, side state and outbox events are written in one transaction;
//! only after the commit are they announced.
//!
//! Architecture invariants:
//! - this crate is the only one that writes conversations and messages;
//! - a bot message is stored only if `baton_model::bot_may_speak` holds for
//!   the conversation *as the lock shows it* (`unit::bot_plan`), so no race
//!   with a claim can let the bot talk over a human, on any channel;
//! - it knows nothing of HTTP: the web crate and the channels call it.

mod actions;
pub mod auth;
pub mod bot;
pub mod bus;
mod clock;
pub mod config;
mod delivery;
mod desk;
mod fanout;
pub mod hours;
mod knowledge;
pub mod llm;
pub mod outbound;
pub mod plugins;
mod routing;
mod runtime;
mod settings;
mod staff;
mod supervisor;
#[cfg(feature = "testkit")]
pub mod testkit;
mod turn;
mod unit;
mod visitor;
pub mod webhooks;

pub use bot::{Bot, BotMessage, BotReply, BotTurn, KnowledgeBot};
pub use bus::EventBus;
pub use clock::Clock;
pub use config::Config;
pub use knowledge::KnowledgeEntry;
pub use runtime::{PRESENCE_HEARTBEAT_MS, PRESENCE_TIMEOUT_MS, Runtime, StartConversation};
pub use unit::notice_text;

/// The id of the bot configured by `[bot]`.
pub const DEFAULT_BOT: &str = "default";

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the runtime refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Transition(#[from] baton_model::TransitionError),
    /// Well-formed but not acceptable (422).
    #[error("{0}")]
    Invalid(String),
    #[error("message is too large: the limit is {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] baton_store::Error),
}

impl From<baton_channel::Error> for Error {
    fn from(e: baton_channel::Error) -> Self {
        match e {
            baton_channel::Error::Malformed { .. } => Error::Invalid(e.to_string()),
            other => Error::Invalid(other.to_string()),
        }
    }
}
