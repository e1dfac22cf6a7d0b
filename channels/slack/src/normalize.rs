//! Slack payloads → what Baton does with them. Pure: no IO.
//!
//! Two payload families arrive, over HTTP or Socket Mode alike:
//! - Events API envelopes (`url_verification`, `event_callback`): a direct
//!   message to the app is a visitor's message; a reply in the thread of a
//!   console post is an agent's reply; everything else is ignored.
//! - Interactivity payloads (`block_actions`): a console button (Claim,
//!   Hand back, Resolve) or a visitor's button in a DM.
//!
//! Thread keys: a visitor's DM channel id (`D…`). The platform message id is
//! `<channel>:<ts>`, so a redelivered event is stored once.

use baton_channel::{Error, Inbound, InboundSender, Result};
use baton_model::{Attachment, ChannelKind};
use serde_json::Value;

/// The prefix of a visitor button's `action_id` in a DM.
pub const VISITOR_ACTION: &str = "baton_visitor:";

/// A console button.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleAction {
    Claim,
    HandBack,
    Resolve,
}

impl ConsoleAction {
    pub fn action_id(self) -> &'static str {
        match self {
            ConsoleAction::Claim => "baton_claim",
            ConsoleAction::HandBack => "baton_hand_back",
            ConsoleAction::Resolve => "baton_resolve",
        }
    }

    fn from_action_id(id: &str) -> Option<Self> {
        [Self::Claim, Self::HandBack, Self::Resolve]
            .into_iter()
            .find(|a| a.action_id() == id)
    }
}

/// What an Events API body asks of Baton.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Slack checks the endpoint: answer with the challenge.
    UrlVerification { challenge: String },
    /// A visitor wrote to the app in a DM.
    Visitor(Inbound),
    /// A staff member replied in the thread of a console post.
    AgentReply {
        channel: String,
        thread_ts: String,
        user: String,
        text: String,
        ts: String,
    },
    /// Anything else: bots' own messages, edits, joins, unknown event types.
    Ignored,
}

/// What an interactivity payload asks of Baton.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interaction {
    Console {
        action: ConsoleAction,
        conversation_id: String,
        user: String,
        channel: String,
    },
    Visitor(Inbound),
    Ignored,
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::Malformed {
        channel: ChannelKind::Slack,
        reason: reason.into(),
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Reads an Events API body. `console` is the console channel's id, if any.
pub fn event(body: &[u8], console: Option<&str>) -> Result<Event> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    let kind = str_at(&v, "type").ok_or_else(|| malformed("the body has no `type`"))?;
    match kind {
        "url_verification" => Ok(Event::UrlVerification {
            challenge: str_at(&v, "challenge")
                .ok_or_else(|| malformed("url_verification without a challenge"))?
                .to_owned(),
        }),
        "event_callback" => {
            let e = v
                .get("event")
                .filter(|e| e.is_object())
                .ok_or_else(|| malformed("event_callback without an event"))?;
            Ok(message_event(e, console))
        }
        _ => Ok(Event::Ignored),
    }
}

fn message_event(e: &Value, console: Option<&str>) -> Event {
    if str_at(e, "type") != Some("message") {
        return Event::Ignored;
    }
    // Bots (Baton itself included) and edits, deletions, joins carry a
    // `bot_id` or a `subtype`; only people's new messages count.
    let subtype = str_at(e, "subtype");
    if e.get("bot_id").is_some() || !matches!(subtype, None | Some("file_share")) {
        return Event::Ignored;
    }
    let (Some(user), Some(channel), Some(ts)) =
        (str_at(e, "user"), str_at(e, "channel"), str_at(e, "ts"))
    else {
        return Event::Ignored;
    };
    let text = str_at(e, "text").unwrap_or_default().trim().to_owned();
    let files = attachments(e);
    if str_at(e, "channel_type") == Some("im") {
        if text.is_empty() && files.is_empty() {
            return Event::Ignored;
        }
        return Event::Visitor(Inbound {
            text,
            attachments: files,
            channel_message_id: Some(format!("{channel}:{ts}")),
            no_reply: false,
            ..visitor(channel, user)
        });
    }
    match (console, str_at(e, "thread_ts")) {
        (Some(console), Some(thread_ts)) if console == channel && thread_ts != ts => {
            if text.is_empty() {
                return Event::Ignored;
            }
            Event::AgentReply {
                channel: channel.to_owned(),
                thread_ts: thread_ts.to_owned(),
                user: user.to_owned(),
                text,
                ts: ts.to_owned(),
            }
        }
        _ => Event::Ignored,
    }
}

/// An empty inbound from a visitor in their DM channel.
fn visitor(channel: &str, user: &str) -> Inbound {
    Inbound {
        channel: ChannelKind::Slack,
        conversation_id: None,
        thread_key: channel.to_owned(),
        sender: InboundSender {
            external_id: user.to_owned(),
            name: None,
            email: None,
        },
        text: String::new(),
        attachments: vec![],
        action: None,
        client_id: None,
        channel_message_id: None,
        no_reply: false,
    }
}

fn attachments(e: &Value) -> Vec<Attachment> {
    e.get("files")
        .and_then(Value::as_array)
        .map(|files| {
            files
                .iter()
                .map(|f| Attachment {
                    name: str_at(f, "name").unwrap_or("file").to_owned(),
                    content_type: str_at(f, "mimetype").map(str::to_owned),
                    size: f.get("size").and_then(Value::as_i64),
                    url: str_at(f, "permalink").map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads an interactivity payload (the JSON in the form field `payload`).
pub fn interaction(payload: &[u8]) -> Result<Interaction> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
    if str_at(&v, "type") != Some("block_actions") {
        return Ok(Interaction::Ignored);
    }
    let user = v
        .get("user")
        .and_then(|u| str_at(u, "id"))
        .ok_or_else(|| malformed("block_actions without a user"))?;
    let channel = v
        .get("channel")
        .and_then(|c| str_at(c, "id"))
        .ok_or_else(|| malformed("block_actions without a channel"))?;
    let Some(action) = v
        .get("actions")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    else {
        return Ok(Interaction::Ignored);
    };
    let action_id = str_at(action, "action_id").unwrap_or_default();
    let value = str_at(action, "value").unwrap_or_default();
    if let Some(console) = ConsoleAction::from_action_id(action_id) {
        if value.is_empty() {
            return Err(malformed("a console button without a conversation"));
        }
        return Ok(Interaction::Console {
            action: console,
            conversation_id: value.to_owned(),
            user: user.to_owned(),
            channel: channel.to_owned(),
        });
    }
    if let Some(id) = action_id.strip_prefix(VISITOR_ACTION)
        && !id.is_empty()
    {
        return Ok(Interaction::Visitor(Inbound {
            action: Some(id.to_owned()),
            ..visitor(channel, user)
        }));
    }
    Ok(Interaction::Ignored)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "C0CONSOLE1";

    fn ev(json: &str) -> Event {
        event(json.as_bytes(), Some(CONSOLE)).unwrap()
    }

    #[test]
    fn url_verification() {
        assert_eq!(
            ev(include_str!("../tests/fixtures/url_verification.json")),
            Event::UrlVerification {
                challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into()
            }
        );
    }

    #[test]
    fn a_direct_message_is_a_visitor_message() {
        let Event::Visitor(i) = ev(include_str!("../tests/fixtures/im_message.json")) else {
            panic!("not a visitor message");
        };
        assert_eq!(i.text, "My laptop will not connect to the VPN");
        assert_eq!(i.thread_key, "D0VISITOR1");
        assert_eq!(i.sender.external_id, "U0VISITOR1");
        assert_eq!(
            i.channel_message_id.as_deref(),
            Some("D0VISITOR1:1763712000.000200")
        );
    }

    #[test]
    fn a_thread_reply_in_the_console_is_an_agent_reply() {
        assert_eq!(
            ev(include_str!("../tests/fixtures/console_thread_reply.json")),
            Event::AgentReply {
                channel: CONSOLE.into(),
                thread_ts: "1763712100.000100".into(),
                user: "U0AGENT001".into(),
                text: "On it, restarting your VPN profile now.".into(),
                ts: "1763712160.000300".into(),
            }
        );
        // Without a console channel it is just chatter.
        let body = include_bytes!("../tests/fixtures/console_thread_reply.json");
        assert_eq!(event(body, None).unwrap(), Event::Ignored);
    }

    #[test]
    fn bots_edits_and_unknown_events_are_ignored() {
        for f in [
            include_str!("../tests/fixtures/bot_message.json"),
            include_str!("../tests/fixtures/message_changed.json"),
            include_str!("../tests/fixtures/app_mention_unknown.json"),
            include_str!("../tests/fixtures/team_join.json"),
        ] {
            assert_eq!(ev(f), Event::Ignored, "{f}");
        }
    }

    #[test]
    fn console_buttons() {
        let got =
            interaction(include_bytes!("../tests/fixtures/block_actions_claim.json")).unwrap();
        assert_eq!(
            got,
            Interaction::Console {
                action: ConsoleAction::Claim,
                conversation_id: "01JD0CONVERSATION".into(),
                user: "U0AGENT001".into(),
                channel: CONSOLE.into(),
            }
        );
    }

    #[test]
    fn a_visitor_button_in_a_dm() {
        let got = interaction(include_bytes!(
            "../tests/fixtures/block_actions_visitor.json"
        ))
        .unwrap();
        let Interaction::Visitor(i) = got else {
            panic!("not a visitor press")
        };
        assert_eq!(i.action.as_deref(), Some("request_human"));
        assert_eq!(i.thread_key, "D0VISITOR1");
    }

    #[test]
    fn garbage_is_refused() {
        for body in [
            "",
            "{",
            "[]",
            "{\"type\":\"event_callback\"}",
            "{\"no\":\"type\"}",
        ] {
            assert!(event(body.as_bytes(), Some(CONSOLE)).is_err(), "{body}");
        }
        for body in ["", "{", "{\"type\":\"block_actions\"}"] {
            assert!(interaction(body.as_bytes()).is_err(), "{body}");
        }
    }
}
