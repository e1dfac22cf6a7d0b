//! Write Baton plugins in Rust.
//!
//! A plugin is a `cdylib` built for `wasm32-wasip2` against the WIT package
//! `baton:plugin` (a copy of Baton's `sdk/wit/` in the crate's `wit/`
//! folder, as `baton plugin new` lays it out). One macro per kind generates
//! the bindings and exports your type; you implement the generated `Guest`
//! trait:
//!
//! ```ignore
//! baton_plugin_sdk::trigger!(Vip);
//!
//! struct Vip;
//!
//! impl Guest for Vip {
//!     fn on_event(event: Event) -> Option<Escalation> {
//!         let words = config::get("keywords").unwrap_or_else(|| "vip".into());
//!         let word = baton_plugin_sdk::find_keyword(&event.text, &words)?;
//!         Some(Escalation { note: Some(format!("said {word}")), priority: 2,
//!                           department: None, tags: vec!["vip".into()] })
//!     }
//! }
//! ```
//!
//! Each macro brings the host interfaces into scope (`log`, `kv`, `http`,
//! `conversation`, `tags`, `messages`, `notify`, `config`) and the world's
//! types (`Event`, `Escalation`, `Invocation`, `Step`, `Job`, `Outcome`, ...).
//! Only the interfaces your code calls end up imported, and each must be
//! granted in `plugin.toml`'s `capabilities`.

pub use serde_json;
pub use wit_bindgen;

/// Generates a trigger plugin: implement `Guest::on_event`.
/// `trigger!(MyType)` reads `./wit`; `trigger!(MyType, "path/to/wit")` another folder.
#[macro_export]
macro_rules! trigger {
    ($ty:ident) => {
        $crate::trigger!($ty, "wit");
    };
    ($ty:ident, $wit:tt) => {
        $crate::__world!($ty, $wit, "baton:plugin/trigger@0.1.0");
    };
}

/// Generates a power-up plugin: implement `Guest::describe` and `Guest::invoke`.
#[macro_export]
macro_rules! power_up {
    ($ty:ident) => {
        $crate::power_up!($ty, "wit");
    };
    ($ty:ident, $wit:tt) => {
        $crate::__world!($ty, $wit, "baton:plugin/power-up@0.1.0");
    };
}

/// Generates an action plugin: implement `Guest::run`.
#[macro_export]
macro_rules! action {
    ($ty:ident) => {
        $crate::action!($ty, "wit");
    };
    ($ty:ident, $wit:tt) => {
        $crate::__world!($ty, $wit, "baton:plugin/action@0.1.0");
        // The trigger and power-up worlds bring `Escalation` in themselves.
        #[allow(unused_imports)]
        use baton::plugin::types::Escalation;
    };
}

/// The bindings of one world, its host interfaces in scope, `$ty` exported.
#[doc(hidden)]
#[macro_export]
macro_rules! __world {
    ($ty:ident, $wit:tt, $world:tt) => {
        $crate::wit_bindgen::generate!({
            path: $wit,
            world: $world,
            runtime_path: "baton_plugin_sdk::wit_bindgen::rt",
            generate_all,
        });
        #[allow(unused_imports)]
        use baton::plugin::{config, conversation, http, kv, log, messages, notify, tags};
        #[allow(unused_imports)]
        use baton::plugin::types::{Contact, Conversation, Message};
        export!($ty);
    };
}

/// Lower case, with runs of anything but letters and digits as one space.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.trim().to_owned()
}

/// The first of the comma-separated `keywords` found in `text` as whole
/// words (case and punctuation aside), if any.
pub fn find_keyword(text: &str, keywords: &str) -> Option<String> {
    let text = format!(" {} ", normalize(text));
    keywords
        .split(',')
        .map(normalize)
        .filter(|k| !k.is_empty())
        .find(|k| text.contains(&format!(" {k} ")))
}

/// A plausible email address: one `@`, a dot in the domain, no spaces.
pub fn is_email(text: &str) -> bool {
    let text = text.trim();
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.contains(char::is_whitespace)
        && !domain.contains('@')
}

/// The first email address in a message ("it's ada@example.com, thanks").
pub fn find_email(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>' | '(' | ')'))
        .map(|w| w.trim_end_matches(['.', '!', '?']))
        .find(|w| is_email(w))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_whole_words_only() {
        assert_eq!(find_keyword("I'm a VIP!", "vip,urgent"), Some("vip".into()));
        assert_eq!(find_keyword("This is URGENT.", "vip, urgent"), Some("urgent".into()));
        assert_eq!(find_keyword("vipers are snakes", "vip"), None);
        assert_eq!(find_keyword("anything", ""), None);
    }

    #[test]
    fn emails_are_found_in_sentences() {
        assert_eq!(find_email("sure, it's ada@example.com."), Some("ada@example.com".into()));
        assert_eq!(find_email("no address here @ all"), None);
        assert!(!is_email("ada@localhost"));
    }
}
