//! The JSON shapes of conversations, messages and events (API.md, "Shapes").
//!
//! They live here rather than in the web crate because an event's body is
//! written to the durable outbox at the moment of the transition and sent
//! verbatim to webhooks, the inbox stream and the widget later, on any node.
//! Request bodies and errors stay in the web crate.

use crate::handover::{AgentRef, EventKind};
use crate::model::{
    Action, Attachment, ChannelKind, ContactRef, Conversation, Message, SenderKind, Status,
};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverView {
    pub reason: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// `Conversation` as API clients see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationView {
    pub id: String,
    pub bot: String,
    pub channel: ChannelKind,
    pub status: Status,
    pub contact: ContactRef,
    pub assignee: Option<AgentRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    pub tags: Vec<String>,
    pub handover: Option<HandoverView>,
    pub bot_paused_until: Option<Timestamp>,
    pub unread: i64,
    pub last_seq: i64,
    pub escalated_at: Option<Timestamp>,
    pub claimed_at: Option<Timestamp>,
    pub first_agent_reply_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        let s = &c.state;
        Self {
            id: c.id.clone(),
            bot: c.bot_id.clone(),
            channel: c.channel,
            status: s.status,
            contact: c.contact.clone(),
            assignee: s.assignee.clone(),
            department: s.department.clone(),
            tags: c.tags.clone(),
            handover: s.handover.as_ref().map(|h| HandoverView {
                reason: h.reason.to_string(),
                at: h.at,
                by: h.by.clone(),
            }),
            bot_paused_until: s.bot_paused_until,
            unread: c.unread,
            last_seq: c.last_seq,
            escalated_at: s.escalated_at,
            claimed_at: s.claimed_at,
            first_agent_reply_at: s.first_agent_reply_at,
            resolved_at: s.resolved_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// `Message` as API clients see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender: SenderKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<AgentRef>,
    pub text: String,
    pub internal: bool,
    pub actions: Vec<Action>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub created_at: Timestamp,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id.clone(),
            conversation_id: m.conversation_id.clone(),
            seq: m.seq,
            sender: m.sender,
            author: m.author.clone(),
            text: m.text.clone(),
            internal: m.internal,
            actions: m.actions.clone(),
            attachments: m.attachments.clone(),
            client_id: m.client_id.clone(),
            created_at: m.created_at,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    pub conversation: ConversationView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageView>,
}

/// One event: the webhook delivery body, the inbox stream frame and the outbox row, all alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub created_at: Timestamp,
    pub data: EventData,
}
