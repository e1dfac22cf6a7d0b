//! Baton's WebAssembly plugin host.
//!
//! Plugins are components built against the WIT package `baton:plugin`
//! (`sdk/wit/`), one world per kind: triggers decide on a hand-over,
//! power-ups are capabilities the bot invokes (from a phrase or as an LLM
//! tool), actions run after a hand-over. Each lives in a folder with a
//! `plugin.toml` ([`Manifest`]) under Baton's plugins folder.
//!
//! - wasmtime with the component model and the pooling allocator; each
//!   component is compiled once (and cached on disk), pre-instantiated, and
//!   every call gets a fresh store.
//! - Every call runs under a deadline (epoch interruption, and a timer over
//!   the whole call, host calls included), a memory cap (`StoreLimits`) and
//!   optional fuel. A failure is counted and never reaches the conversation;
//!   a plugin that keeps failing is switched off.
//! - Imports are granted by the manifest and checked when the plugin loads.
//!
//! Invariant: this crate knows nothing of the runtime. It reaches Baton only
//! through [`HostApi`], passed in with each call.

pub mod api;
mod bindings;
mod cache;
mod host;
mod imports;
pub mod manifest;
pub mod testing;

pub use api::{
    ContactInfo, ConversationInfo, Escalation, HostApi, HttpRequest, HttpResponse, MessageInfo,
};
pub use host::{
    CallError, Descriptor, EffectiveLimits, FailureKind, Outcome, PluginHost, PluginSettings,
    PluginStatus, PowerUp, Stats, Step,
};
pub use imports::allowed;
pub use manifest::{Manifest, World};
