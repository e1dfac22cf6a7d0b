//! Baton's conversation model and the sans-IO hand-over state machine.
//!
//! This crate is the single authority on *what may happen* to a conversation:
//! which status transitions exist, who wins a claim, and whether the bot may
//! speak. It owns plain data types and pure functions only.
//!
//! Architecture invariant: nothing here does IO. No database, no network, no
//! clock, no async. Callers pass `now` in. That is what lets
//! [`handover::step`] be property-tested exhaustively, and it is why every
//! other crate (store, runtime, web, channels) may depend on this one while
//! this one depends on none of them.

pub mod handover;
pub mod model;
pub mod routing;
pub mod time;
pub mod wire;

pub use handover::{
    AgentRef, Effect, EventKind, HandoverRecord, HandoverState, Input, Notice, Reason,
    TransferTarget, TransitionError, bot_may_speak, step,
};
pub use model::{
    Action, ActionKind, Attachment, BotMemory, ChannelKind, ContactRef, Conversation,
    LEFT_MESSAGE_TAG, Message, PendingTurn, Presence, Role, SenderKind, Status,
};
pub use time::Timestamp;
