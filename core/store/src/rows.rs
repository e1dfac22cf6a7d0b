//! Turning rows into model types. Stored strings that no longer parse are
//! reported as corrupt data rather than silently replaced.

use crate::db::Row;
use crate::{Error, Result};
use baton_model::{
    AgentRef, BotMemory, ChannelKind, ContactRef, Conversation, HandoverRecord, HandoverState,
    Message, PendingTurn, Reason, SenderKind, Status, Timestamp,
};
use std::str::FromStr;

pub(crate) const CONVERSATION_COLUMNS: &str = "c.id, c.bot_id, c.channel, c.thread_key, c.status, c.assignee_id, \
    u.name AS assignee_name, c.department, c.handover_reason, c.handover_at, c.handover_by, \
    c.bot_paused_until, c.escalated_at, c.claimed_at, c.first_agent_reply_at, c.resolved_at, \
    c.tags, c.unread, c.last_seq, c.version, c.created_at, c.updated_at, \
    c.topic, c.collecting, c.bot_counters, c.power_up, c.turn_seq, c.turn_node, c.turn_at, \
    k.id AS contact_id, k.name AS contact_name, k.email AS contact_email, k.phone AS contact_phone";

pub(crate) const CONVERSATION_FROM: &str = "FROM conversations c \
    JOIN contacts k ON k.id = c.contact_id \
    LEFT JOIN users u ON u.id = c.assignee_id";

pub(crate) const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, sender, author_id, author_name, \
    text, internal, actions, attachments, client_id, channel_message_id, created_at";

pub(crate) fn parse<T: FromStr>(value: &str, what: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(value: &str, what: &str) -> Result<T> {
    serde_json::from_str(value).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

fn ts(row: &Row, col: &str) -> Result<Option<Timestamp>> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(Timestamp))
}

pub(crate) fn conversation(row: &Row) -> Result<Conversation> {
    let status: String = row.try_get("status")?;
    let channel: String = row.try_get("channel")?;
    let assignee = match (
        row.try_get::<Option<String>, _>("assignee_id")?,
        row.try_get::<Option<String>, _>("assignee_name")?,
    ) {
        (Some(id), name) => Some(AgentRef {
            name: name.unwrap_or_else(|| "a former agent".to_owned()),
            id,
        }),
        (None, _) => None,
    };
    let handover = match row.try_get::<Option<String>, _>("handover_reason")? {
        Some(reason) => Some(HandoverRecord {
            reason: Reason::new(reason).map_err(|e| Error::Corrupt(e.to_string()))?,
            at: ts(row, "handover_at")?.unwrap_or_default(),
            by: row.try_get("handover_by")?,
        }),
        None => None,
    };
    let tags: String = row.try_get("tags")?;
    Ok(Conversation {
        id: row.try_get("id")?,
        bot_id: row.try_get("bot_id")?,
        channel: parse::<ChannelKind>(&channel, "conversation channel")?,
        contact: ContactRef {
            id: row.try_get("contact_id")?,
            name: row.try_get("contact_name")?,
            email: row.try_get("contact_email")?,
            phone: row.try_get("contact_phone")?,
        },
        thread_key: row.try_get("thread_key")?,
        state: HandoverState {
            status: parse::<Status>(&status, "conversation status")?,
            assignee,
            department: row.try_get("department")?,
            handover,
            bot_paused_until: ts(row, "bot_paused_until")?,
            escalated_at: ts(row, "escalated_at")?,
            claimed_at: ts(row, "claimed_at")?,
            first_agent_reply_at: ts(row, "first_agent_reply_at")?,
            resolved_at: ts(row, "resolved_at")?,
        },
        tags: json(&tags, "conversation tags")?,
        unread: row.try_get("unread")?,
        last_seq: row.try_get("last_seq")?,
        version: row.try_get("version")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        memory: BotMemory {
            counters: row.try_get("bot_counters")?,
            collecting: row.try_get("collecting")?,
            topic: row.try_get("topic")?,
            power_up: row.try_get("power_up")?,
            turn: match (
                row.try_get::<Option<i64>, _>("turn_seq")?,
                row.try_get::<Option<String>, _>("turn_node")?,
                ts(row, "turn_at")?,
            ) {
                (Some(seq), Some(node), Some(at)) => Some(PendingTurn { seq, node, at }),
                _ => None,
            },
        },
    })
}

pub(crate) fn message(row: &Row) -> Result<Message> {
    let sender: String = row.try_get("sender")?;
    let author = match (
        row.try_get::<Option<String>, _>("author_id")?,
        row.try_get::<Option<String>, _>("author_name")?,
    ) {
        (Some(id), Some(name)) => Some(AgentRef { id, name }),
        _ => None,
    };
    let actions: String = row.try_get("actions")?;
    let attachments: String = row.try_get("attachments")?;
    Ok(Message {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        seq: row.try_get("seq")?,
        sender: parse::<SenderKind>(&sender, "message sender")?,
        author,
        text: row.try_get("text")?,
        internal: row.try_get::<i64, _>("internal")? != 0,
        actions: json(&actions, "message actions")?,
        attachments: json(&attachments, "message attachments")?,
        client_id: row.try_get("client_id")?,
        channel_message_id: row.try_get("channel_message_id")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}
