//! The one conversation model every channel is normalized into.

use crate::handover::HandoverState;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Declares a closed, snake_case string enum with `as_str`, `FromStr` and serde.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        what: stringify!($name),
                        value: s.chars().take(64).collect(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}

/// A string that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`, expected one of: {}", expected.join(", "))]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

string_enum!(
    /// Where a conversation is in the hand-over lifecycle (DESIGN.md, "Status lifecycle").
    Status {
        Bot => "bot",
        Waiting => "waiting",
        Active => "active",
        Resolved => "resolved",
    }
);

string_enum!(
    /// The platform a conversation lives on. A conversation never changes channel.
    ChannelKind {
        Web => "web",
        Email => "email",
        Slack => "slack",
        Discord => "discord",
        Telegram => "telegram",
    }
);

string_enum!(
    /// Who wrote a message.
    SenderKind {
        Visitor => "visitor",
        Bot => "bot",
        Agent => "agent",
        System => "system",
    }
);

string_enum!(
    /// A staff member's role. Owner, admin and responder may claim and reply; a viewer only reads.
    Role {
        Owner => "owner",
        Admin => "admin",
        Responder => "responder",
        Viewer => "viewer",
    }
);

string_enum!(
    /// A staff member's availability, as shown in the inbox.
    Presence {
        Online => "online",
        Away => "away",
        Offline => "offline",
    }
);

string_enum!(
    /// What pressing a message button does.
    ActionKind {
        Reply => "reply",
        Link => "link",
        RequestHuman => "request_human",
    }
);

impl Role {
    /// Whether this role may claim conversations and write to visitors.
    pub const fn may_respond(self) -> bool {
        !matches!(self, Role::Viewer)
    }

    /// Whether this role may manage users, webhooks and settings.
    pub const fn may_administer(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// A button under a message: a quick reply, a link, or "talk to a human".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub id: String,
    pub label: String,
    pub kind: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A file that came with or goes out with a message; only metadata and a URL are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The person on the visitor side, as much as the conversation needs of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// One thread on one channel, with its hand-over state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    pub id: String,
    pub bot_id: String,
    pub channel: ChannelKind,
    pub contact: ContactRef,
    /// The platform's key for the thread (a chat id, an email thread); none for the web.
    pub thread_key: Option<String>,
    pub state: HandoverState,
    pub tags: Vec<String>,
    pub unread: i64,
    /// Sequence number of the newest message; the next message gets `last_seq + 1`.
    pub last_seq: i64,
    /// Bumped by every state change; the store's compare-and-swap key.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// What the bot keeps with the conversation between turns.
    pub memory: BotMemory,
}

/// What the bot keeps with a conversation between two turns, written in the
/// same transaction as the turn's messages. Opaque here: the runtime and the
/// bot give it meaning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BotMemory {
    /// The hand-over triggers' counters since the last hand-over (JSON).
    pub counters: Option<String>,
    /// The contact collector's pending question and hand-over (JSON).
    pub collecting: Option<String>,
    /// What the hand-over being prepared is about (an intent or entry id).
    pub topic: Option<String>,
    /// The power-up waiting for the visitor's answer (JSON).
    pub power_up: Option<String>,
    /// The visitor message the bot is due to answer, if a turn is under way.
    pub turn: Option<PendingTurn>,
}

/// A bot turn that was due when a visitor's message was stored: which
/// message, which node runs the turn, since when. The bot's answer clears
/// it in the transaction that writes the answer, as does any change that
/// takes the conversation from the bot; a turn left behind by a node that
/// died is run again by another (or the same, restarted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingTurn {
    pub seq: i64,
    pub node: String,
    pub at: Timestamp,
}

/// The tag the leave-a-message form puts on a web conversation.
pub const LEFT_MESSAGE_TAG: &str = "offline";

impl Conversation {
    /// A web visitor's left message with their address: the team's answers
    /// go to them by email as well.
    pub fn is_left_message(&self) -> bool {
        self.channel == ChannelKind::Web
            && self.tags.iter().any(|t| t == LEFT_MESSAGE_TAG)
            && self.contact.email.is_some()
    }

    /// Whether a mail from `from` may continue this conversation: any email
    /// thread, or a left message when the mail comes from the address the
    /// visitor left. Nothing else crosses channels.
    pub fn accepts_mail_from(&self, from: Option<&str>) -> bool {
        match self.channel {
            ChannelKind::Email => true,
            _ => {
                self.is_left_message()
                    && from.is_some_and(|f| {
                        self.contact
                            .email
                            .as_deref()
                            .is_some_and(|e| e.eq_ignore_ascii_case(f))
                    })
            }
        }
    }
}

/// An immutable message; `seq` orders it within its conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender: SenderKind,
    pub author: Option<crate::AgentRef>,
    pub text: String,
    /// Internal notes are for staff only and never reach the visitor.
    pub internal: bool,
    pub actions: Vec<Action>,
    pub attachments: Vec<Attachment>,
    /// The widget's own id for a message, so that a resend stores one message.
    pub client_id: Option<String>,
    /// The platform's id for the message, so that a redelivery stores one message.
    pub channel_message_id: Option<String>,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_and_reject_unknown_spellings() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(*s));
        }
        let err = "open".parse::<Status>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown Status `open`, expected one of: bot, waiting, active, resolved"
        );
    }

    #[test]
    fn only_viewers_may_not_respond() {
        let responders: Vec<_> = Role::ALL.iter().filter(|r| r.may_respond()).collect();
        assert_eq!(responders, [&Role::Owner, &Role::Admin, &Role::Responder]);
    }
}
