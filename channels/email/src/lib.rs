//! The email channel.
//!
//! So far: [`parse`], the pure reading of raw MIME (text, quotes and
//! signatures cut, threading headers, attachments, automated mail).

pub mod parse;
