//! Baton's built-in bot, sans-IO: no database, network or clock.
//!
//! - [`kb`]: the knowledge base (TOML question-and-answer entries, Markdown
//!   documents, intents) and ranked retrieval with a confidence score that
//!   tells *understood*, *no information* and *not understood* apart.
//! - [`triggers`]: the hand-over triggers as a pure function of the turn and
//!   the counters since the last hand-over, property-tested.
//! - [`collect`]: the contact info collector that asks for an email (and
//!   optionally a name and phone) before a hand-over.
//! - [`bot`]: the bot that reads a message, answers it, and says when a human
//!   must take over and why.
//!
//! A sample knowledge base for the demo shop ships in `knowledge/` and is
//! compiled in, so a fresh `cargo run --release` has a useful bot.

pub mod bot;
pub mod collect;
pub mod kb;
pub mod text;
pub mod triggers;

pub use bot::{BuiltinBot, Reading, Reply, Said};
pub use collect::{Collecting, ContactField, ContactUpdate, Known, Next};
pub use kb::{KbError, KnowledgeBase};
pub use triggers::{Counters, TriggerConfig, TurnFacts, Understanding, Verdict, assess, replay};
