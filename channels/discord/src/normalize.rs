//! Discord gateway events → [`Inbound`] messages. Pure: no IO.
//!
//! - Direct messages: every message from a person, and button presses.
//! - The support channel: each top-level message opens a conversation in a
//!   thread of its own (the thread is created from the message, so the
//!   thread's id is the message's id).
//! - Any other guild channel may be one of those threads; the gateway does not
//!   say, so such messages come out as [`Place::MaybeThread`] and the receive
//!   loop takes them only when a conversation already lives there.
//! - Messages from bots (Baton's own included), system messages (joins, pins,
//!   "thread created") and every other event give nothing.
//!
//! Thread keys: `dm:<channel id>` for a DM, `thread:<thread id>` in the
//! support channel; delivery sends to the id after the colon. The platform
//! message id is the message's snowflake, so a redelivered event (a resumed
//! gateway session replays) is stored once.

use baton_channel::{Error, Inbound, InboundSender, RawInbound, Result};
use baton_model::{Attachment, ChannelKind};
use serde::Deserialize;
use serenity::model::application::{ComponentInteraction, ComponentInteractionDataKind};
use serenity::model::channel::{Message, MessageType};
use serenity::model::user::User;

/// What the receive loop knows that a payload does not say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Where {
    /// The bot's own user id, from `READY` (its mentions are stripped).
    pub bot_id: Option<u64>,
    /// The configured support channel, if any.
    pub support_channel: Option<u64>,
}

/// Where a message was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Dm,
    /// A top-level message in the support channel: a new thread is opened
    /// from it before it is stored.
    SupportChannel,
    /// Another guild channel: taken only if it is a thread Baton opened.
    MaybeThread,
}

/// A message or press, and where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    pub inbound: Inbound,
    pub place: Place,
    /// The channel the payload arrived in.
    pub channel_id: u64,
}

/// The channel a thread key delivers to.
pub fn channel_of(thread_key: &str) -> Option<u64> {
    let (kind, id) = thread_key.split_once(':')?;
    matches!(kind, "dm" | "thread")
        .then(|| id.parse().ok())
        .flatten()
}

/// A gateway dispatch as Discord sends it: `{"op":0,"t":"MESSAGE_CREATE","d":{…}}`.
#[derive(Deserialize)]
struct Dispatch {
    op: u8,
    #[serde(default)]
    t: Option<String>,
    #[serde(default)]
    d: serde_json::Value,
}

/// Parses a recorded gateway dispatch (`MESSAGE_CREATE`, `INTERACTION_CREATE`).
pub fn raw(raw: &RawInbound, at: &Where) -> Result<Vec<Inbound>> {
    let malformed = |e: serde_json::Error| Error::Malformed {
        channel: ChannelKind::Discord,
        reason: e.to_string(),
    };
    let dispatch: Dispatch = serde_json::from_slice(&raw.body).map_err(malformed)?;
    if dispatch.op != 0 {
        return Ok(vec![]);
    }
    let classified = match dispatch.t.as_deref() {
        Some("MESSAGE_CREATE") => {
            let m: Message = serde_json::from_value(dispatch.d).map_err(malformed)?;
            message(&m, at)
        }
        Some("INTERACTION_CREATE") => {
            // Only component presses matter; commands and pings are not ours.
            if dispatch.d["type"] != 3 {
                return Ok(vec![]);
            }
            let i: ComponentInteraction = serde_json::from_value(dispatch.d).map_err(malformed)?;
            component(&i)
        }
        _ => None,
    };
    Ok(classified.into_iter().map(|c| c.inbound).collect())
}

/// A `MESSAGE_CREATE` → at most one inbound message.
pub fn message(m: &Message, at: &Where) -> Option<Classified> {
    if m.author.bot || m.author.system || m.webhook_id.is_some() {
        return None;
    }
    if !matches!(m.kind, MessageType::Regular | MessageType::InlineReply) {
        return None;
    }
    let channel_id = m.channel_id.get();
    let place = if m.guild_id.is_none() {
        Place::Dm
    } else if at.support_channel == Some(channel_id) {
        Place::SupportChannel
    } else {
        Place::MaybeThread
    };
    let text = match at.bot_id {
        Some(bot) => strip_mention(&m.content, bot),
        None => m.content.trim().to_owned(),
    };
    let attachments: Vec<Attachment> = m
        .attachments
        .iter()
        .map(|a| Attachment {
            name: a.filename.clone(),
            content_type: a.content_type.clone(),
            size: Some(i64::from(a.size)),
            url: Some(a.url.clone()),
        })
        .collect();
    if text.is_empty() && attachments.is_empty() {
        return None;
    }
    let thread_key = match place {
        Place::Dm => format!("dm:{channel_id}"),
        // The thread opened from this message will carry its id.
        Place::SupportChannel => format!("thread:{}", m.id.get()),
        Place::MaybeThread => format!("thread:{channel_id}"),
    };
    Some(Classified {
        inbound: Inbound {
            channel: ChannelKind::Discord,
            conversation_id: None,
            thread_key,
            sender: sender(&m.author),
            text,
            attachments,
            action: None,
            client_id: None,
            channel_message_id: Some(m.id.get().to_string()),
            no_reply: false,
        },
        place,
        channel_id,
    })
}

/// A button press (`INTERACTION_CREATE`, type 3) → the pressed action.
pub fn component(i: &ComponentInteraction) -> Option<Classified> {
    if !matches!(i.data.kind, ComponentInteractionDataKind::Button) || i.user.bot {
        return None;
    }
    let id = i.data.custom_id.trim();
    if id.is_empty() {
        return None;
    }
    let channel_id = i.channel_id.get();
    let (place, thread_key) = if i.guild_id.is_none() {
        (Place::Dm, format!("dm:{channel_id}"))
    } else {
        // Baton's buttons are only ever in DMs and in its threads.
        (Place::MaybeThread, format!("thread:{channel_id}"))
    };
    Some(Classified {
        inbound: Inbound {
            channel: ChannelKind::Discord,
            conversation_id: None,
            thread_key,
            sender: sender(&i.user),
            text: String::new(),
            attachments: vec![],
            action: Some(id.to_owned()),
            client_id: None,
            channel_message_id: None,
            no_reply: false,
        },
        place,
        channel_id,
    })
}

fn sender(u: &User) -> InboundSender {
    InboundSender {
        external_id: u.id.get().to_string(),
        name: Some(u.global_name.clone().unwrap_or_else(|| u.name.clone()))
            .filter(|n| !n.trim().is_empty()),
        email: None,
    }
}

/// Removes `<@id>` and `<@!id>` mentions of the bot.
fn strip_mention(text: &str, bot: u64) -> String {
    text.replace(&format!("<@{bot}>"), "")
        .replace(&format!("<@!{bot}>"), "")
        .trim()
        .to_owned()
}

/// A thread's name: the visitor and the start of their question, within
/// Discord's 100 characters.
pub fn thread_name(inbound: &Inbound) -> String {
    let who = inbound.sender.name.as_deref().unwrap_or("Visitor");
    let first_line = inbound.text.lines().next().unwrap_or_default();
    let name = if first_line.is_empty() {
        who.to_owned()
    } else {
        format!("{who}: {first_line}")
    };
    name.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOT: u64 = 1_300_000_000_000_000_001;
    const SUPPORT: u64 = 1_300_000_000_000_000_100;

    fn at() -> Where {
        Where {
            bot_id: Some(BOT),
            support_channel: Some(SUPPORT),
        }
    }

    fn one(body: &str) -> Vec<Inbound> {
        raw(
            &RawInbound {
                thread_hint: None,
                body: body.as_bytes().to_vec(),
            },
            &at(),
        )
        .unwrap()
    }

    fn dispatch(body: &str) -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["d"].clone()
    }

    #[test]
    fn a_direct_message_is_a_dm_conversation() {
        let got = one(include_str!("../tests/fixtures/dm_message.json"));
        assert_eq!(got.len(), 1);
        let m = &got[0];
        assert_eq!(m.thread_key, "dm:1300000000000000200");
        assert_eq!(m.text, "Where is my order #1234?");
        assert_eq!(m.sender.external_id, "1300000000000000300");
        assert_eq!(m.sender.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(m.channel_message_id.as_deref(), Some("1300000000000000400"));
        assert_eq!(channel_of(&m.thread_key), Some(1_300_000_000_000_000_200));
    }

    #[test]
    fn a_message_in_the_support_channel_opens_a_thread_named_after_it() {
        let body = include_str!("../tests/fixtures/support_channel_message.json");
        let m: Message = serde_json::from_value(dispatch(body)).unwrap();
        let c = message(&m, &at()).unwrap();
        assert_eq!(c.place, Place::SupportChannel);
        assert_eq!(c.channel_id, SUPPORT);
        // The thread opened from the message has the message's id.
        assert_eq!(c.inbound.thread_key, format!("thread:{}", m.id.get()));
        // The bot's mention is not part of the question.
        assert_eq!(c.inbound.text, "my invoice shows the wrong VAT number");
        assert_eq!(
            thread_name(&c.inbound),
            "grace: my invoice shows the wrong VAT number"
        );
    }

    #[test]
    fn a_message_elsewhere_in_a_guild_may_be_a_thread() {
        let body = include_str!("../tests/fixtures/thread_message.json");
        let m: Message = serde_json::from_value(dispatch(body)).unwrap();
        let c = message(&m, &at()).unwrap();
        assert_eq!(c.place, Place::MaybeThread);
        assert_eq!(c.inbound.thread_key, format!("thread:{}", c.channel_id));
        assert_eq!(c.inbound.attachments.len(), 1);
        let a = &c.inbound.attachments[0];
        assert_eq!(a.name, "invoice.pdf");
        assert_eq!(a.content_type.as_deref(), Some("application/pdf"));
        assert!(a.url.as_deref().unwrap().starts_with("https://"));
    }

    #[test]
    fn a_button_press_is_the_pressed_action() {
        let got = one(include_str!("../tests/fixtures/button_press.json"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].action.as_deref(), Some("request_human"));
        assert_eq!(got[0].thread_key, "dm:1300000000000000200");
        assert!(got[0].text.is_empty());
    }

    #[test]
    fn bots_system_messages_and_other_events_give_nothing() {
        assert!(one(include_str!("../tests/fixtures/from_bot.json")).is_empty());
        assert!(one(include_str!("../tests/fixtures/thread_created_notice.json")).is_empty());
        assert!(one(include_str!("../tests/fixtures/typing_start.json")).is_empty());
        assert!(one(r#"{"op":11,"d":null}"#).is_empty());
        let err = raw(
            &RawInbound {
                thread_hint: None,
                body: br#"{"op":0,"t":"MESSAGE_CREATE","d":{"id":"x"}}"#.to_vec(),
            },
            &at(),
        );
        assert!(matches!(err, Err(Error::Malformed { .. })), "{err:?}");
    }

    #[test]
    fn thread_keys_name_the_channel_to_deliver_to() {
        assert_eq!(channel_of("dm:42"), Some(42));
        assert_eq!(channel_of("thread:43"), Some(43));
        assert_eq!(channel_of("43"), None);
        assert_eq!(channel_of("guild:43"), None);
        assert_eq!(channel_of("thread:x"), None);
    }
}
