//! Telegram updates → [`Inbound`] messages. Pure: no IO.
//!
//! - Private chats: every text message, `/start`, and inline-keyboard presses.
//! - Groups: only messages that mention the bot (`@name`) or reply to one of
//!   its messages; each member has a conversation of their own in the group.
//! - Messages from bots, edits, joins and every other update kind give nothing.
//!
//! Thread keys: `<chat id>` for a private chat, `<chat id>:<user id>` in a
//! group; delivery sends to the chat id before the colon. The platform's
//! message id is `<chat id>:<message id>`, so a redelivered update is stored once.

use baton_channel::{Error, Inbound, InboundSender, RawInbound, Result, START_ACTION};
use baton_model::{Attachment, ChannelKind};
use teloxide::types::{CallbackQuery, Chat, Message, Update, UpdateKind, User};

/// Who the bot is, from `getMe`: needed to tell mentions and replies in groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotIdentity {
    pub id: u64,
    pub username: String,
}

/// Parses a webhook body or a recorded update.
pub fn raw(raw: &RawInbound, me: Option<&BotIdentity>) -> Result<Vec<Inbound>> {
    let update: Update = serde_json::from_slice(&raw.body).map_err(|e| Error::Malformed {
        channel: ChannelKind::Telegram,
        reason: e.to_string(),
    })?;
    Ok(update_to_inbound(&update, me).into_iter().collect())
}

/// One update → at most one inbound message.
pub fn update_to_inbound(update: &Update, me: Option<&BotIdentity>) -> Option<Inbound> {
    match &update.kind {
        UpdateKind::Message(m) => message(m, me),
        UpdateKind::CallbackQuery(q) => callback(q),
        _ => None,
    }
}

fn message(m: &Message, me: Option<&BotIdentity>) -> Option<Inbound> {
    let from = m.from.as_ref()?;
    if from.is_bot {
        return None;
    }
    let text = m.text().or_else(|| m.caption()).unwrap_or_default();
    let private = m.chat.is_private();
    let text = if private {
        text.trim().to_owned()
    } else {
        let me = me?;
        let mention = format!("@{}", me.username);
        let mentioned = contains_ignore_case(text, &mention);
        let replied_to_bot = m
            .reply_to_message()
            .and_then(|r| r.from.as_ref())
            .is_some_and(|u| u.id.0 == me.id);
        if !mentioned && !replied_to_bot {
            return None;
        }
        remove_ignore_case(text, &mention).trim().to_owned()
    };
    let attachments = attachments(m);
    let command = text.split_whitespace().next().unwrap_or_default();
    let action =
        (command == "/start" || command.starts_with("/start@")).then(|| START_ACTION.to_owned());
    if text.is_empty() && attachments.is_empty() && action.is_none() {
        return None;
    }
    Some(Inbound {
        channel: ChannelKind::Telegram,
        conversation_id: None,
        thread_key: thread_key(&m.chat, from),
        sender: sender(from),
        text,
        attachments,
        action,
        client_id: None,
        channel_message_id: Some(format!("{}:{}", m.chat.id.0, m.id.0)),
        no_reply: false,
    })
}

fn callback(q: &CallbackQuery) -> Option<Inbound> {
    let data = q.data.as_deref()?.trim();
    if data.is_empty() || q.from.is_bot {
        return None;
    }
    let chat = q.message.as_ref()?.chat();
    Some(Inbound {
        channel: ChannelKind::Telegram,
        conversation_id: None,
        thread_key: thread_key(chat, &q.from),
        sender: sender(&q.from),
        text: String::new(),
        attachments: vec![],
        action: Some(data.to_owned()),
        client_id: None,
        channel_message_id: None,
        no_reply: false,
    })
}

/// The chat a thread key delivers to.
pub fn chat_of(thread_key: &str) -> Option<i64> {
    thread_key.split(':').next()?.parse().ok()
}

fn thread_key(chat: &Chat, from: &User) -> String {
    if chat.is_private() {
        chat.id.0.to_string()
    } else {
        format!("{}:{}", chat.id.0, from.id.0)
    }
}

fn sender(u: &User) -> InboundSender {
    InboundSender {
        external_id: u.id.0.to_string(),
        name: Some(u.full_name()).filter(|n| !n.trim().is_empty()),
        email: None,
    }
}

fn attachments(m: &Message) -> Vec<Attachment> {
    let mut out = vec![];
    if let Some(d) = m.document() {
        out.push(Attachment {
            name: d.file_name.clone().unwrap_or_else(|| "document".into()),
            content_type: d.mime_type.as_ref().map(|t| t.to_string()),
            size: Some(i64::from(d.file.size)),
            url: None,
        });
    }
    if let Some(largest) = m.photo().and_then(|p| p.iter().max_by_key(|s| s.width)) {
        out.push(Attachment {
            name: "photo.jpg".into(),
            content_type: Some("image/jpeg".into()),
            size: Some(i64::from(largest.file.size)),
            url: None,
        });
    }
    out
}

fn contains_ignore_case(text: &str, needle: &str) -> bool {
    text.to_lowercase().contains(&needle.to_lowercase())
}

fn remove_ignore_case(text: &str, needle: &str) -> String {
    let lower = text.to_lowercase();
    let needle = needle.to_lowercase();
    match lower.find(&needle) {
        // Lower-casing can change byte lengths; fall back to the text as is.
        Some(at) if lower.len() == text.len() => {
            format!("{}{}", &text[..at], &text[at + needle.len()..])
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> BotIdentity {
        BotIdentity {
            id: 7_000_000_001,
            username: "AcmeSupportBot".into(),
        }
    }

    fn parse(json: &str) -> Vec<Inbound> {
        raw(
            &RawInbound {
                thread_hint: None,
                body: json.as_bytes().to_vec(),
            },
            Some(&me()),
        )
        .unwrap()
    }

    #[test]
    fn a_private_message() {
        let got = parse(include_str!("../tests/fixtures/private_message.json"));
        assert_eq!(got.len(), 1);
        let i = &got[0];
        assert_eq!(i.text, "Where is my order?");
        assert_eq!(i.thread_key, "123456789");
        assert_eq!(i.sender.external_id, "123456789");
        assert_eq!(i.sender.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(i.channel_message_id.as_deref(), Some("123456789:42"));
        assert_eq!(i.action, None);
    }

    #[test]
    fn start_opens_without_a_message() {
        let got = parse(include_str!("../tests/fixtures/start_command.json"));
        assert_eq!(got[0].action.as_deref(), Some(START_ACTION));
    }

    #[test]
    fn a_button_press() {
        let got = parse(include_str!("../tests/fixtures/callback_query.json"));
        assert_eq!(got[0].action.as_deref(), Some("request_human"));
        assert_eq!(got[0].thread_key, "123456789");
        assert_eq!(got[0].channel_message_id, None);
    }

    #[test]
    fn groups_need_a_mention_or_a_reply() {
        let got = parse(include_str!("../tests/fixtures/group_mention.json"));
        assert_eq!(got[0].text, "how do I reset my password?");
        assert_eq!(got[0].thread_key, "-1001234567890:123456789");
        assert!(parse(include_str!("../tests/fixtures/group_chatter.json")).is_empty());
        let reply = parse(include_str!("../tests/fixtures/group_reply.json"));
        assert_eq!(reply[0].text, "thanks, and the invoice?");
        // Without knowing who the bot is, group messages cannot be told apart.
        let blind = raw(
            &RawInbound {
                thread_hint: None,
                body: include_bytes!("../tests/fixtures/group_mention.json").to_vec(),
            },
            None,
        )
        .unwrap();
        assert!(blind.is_empty());
    }

    #[test]
    fn nothing_from_bots_edits_or_other_kinds() {
        assert!(parse(include_str!("../tests/fixtures/edited_message.json")).is_empty());
        assert!(parse(include_str!("../tests/fixtures/from_bot.json")).is_empty());
    }

    #[test]
    fn a_document_is_kept_as_metadata() {
        let got = parse(include_str!("../tests/fixtures/document.json"));
        assert_eq!(got[0].text, "here is the invoice");
        assert_eq!(got[0].attachments[0].name, "invoice-10234.pdf");
        assert_eq!(got[0].attachments[0].size, Some(48213));
    }

    #[test]
    fn garbage_is_refused() {
        for body in ["", "{", "[]", "{\"update_id\":\"x\"}"] {
            assert!(
                raw(
                    &RawInbound {
                        thread_hint: None,
                        body: body.as_bytes().to_vec()
                    },
                    Some(&me())
                )
                .is_err()
            );
        }
    }

    #[test]
    fn thread_keys_deliver_to_their_chat() {
        assert_eq!(chat_of("123456789"), Some(123456789));
        assert_eq!(chat_of("-1001234567890:123456789"), Some(-1001234567890));
        assert_eq!(chat_of("nope"), None);
    }
}
