//! End-to-end tests: the real server, driven over HTTP and WebSocket as an
//! outside client would. One test binary, so the suite links once.
//!
//! Each scenario runs on SQLite and, when `BATON_TEST_POSTGRES_URL` is set
//! (as `.ci/run` does), on PostgreSQL too.

mod bad_input;
mod browser;
mod discord;
mod durable;
mod email;
mod flow;
mod handover;
mod llm;
mod nodes;
mod pages;
mod plugins;
mod security;
mod slack;
mod soak;
mod store_suite;
mod telegram;
mod triggers;
mod webhooks;
