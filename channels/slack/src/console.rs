//! The agent console: one post per handed-over conversation in the console
//! channel, kept in step with the conversation.
//!
//! - `conversation.escalated`: post (or, for a conversation posted before,
//!   update the post and say so in its thread) with the contact, the reason,
//!   a summary of the last messages and the buttons its status allows.
//! - claimed, released, resolved, unclaimed, transferred, reopened, abandoned:
//!   update the post (status line and buttons).
//! - `message.created` from the visitor: mirrored into the post's thread.
//!
//! The link between a conversation and its post (the post's `ts`) is kept
//! by the runtime, so a restart or another node carries on with it.

use crate::normalize::ConsoleAction;
use crate::{CONSOLE, SlackChannel, escape};
use baton_channel::{Ingest, Result};
use baton_model::wire::{ConversationView, EventEnvelope};
use baton_model::{EventKind, SenderKind, Status};
use serde_json::{Value, json};
use slack_morphism::prelude::*;
use std::sync::Arc;

/// How many recent messages the post summarises.
const SUMMARY_MESSAGES: usize = 6;
/// Each summarised message is cut to this many characters.
const SUMMARY_CHARS: usize = 200;

pub(crate) async fn follow(
    slack: &SlackChannel,
    event: &EventEnvelope,
    ingest: &Arc<dyn Ingest>,
) -> Result<()> {
    let Some(console) = slack.inner.config.console_channel.clone() else {
        return Ok(());
    };
    let conv = &event.data.conversation;
    let posted = ingest.conversation_link(CONSOLE, &conv.id).await?;
    match (event.kind, posted) {
        (EventKind::Escalated, None) => {
            let content = post_content(conv, &summary(ingest, &conv.id).await?);
            let req = SlackApiChatPostMessageRequest::new(console.clone().into(), content);
            let session = slack.session();
            let sent = slack
                .call("chat.postMessage", || session.chat_post_message(&req))
                .await?;
            ingest.link(CONSOLE, &conv.id, &sent.ts.0).await?;
        }
        (EventKind::Escalated, Some(ts)) => {
            update(slack, &console, &ts, conv, ingest).await?;
            let reason = conv
                .handover
                .as_ref()
                .map(|h| h.reason.to_string())
                .unwrap_or_default();
            in_thread(
                slack,
                &console,
                &ts,
                format!(":rotating_light: Handed over again ({reason})."),
            )
            .await?;
        }
        (
            EventKind::Claimed
            | EventKind::Released
            | EventKind::Resolved
            | EventKind::Unclaimed
            | EventKind::Transferred
            | EventKind::Reopened
            | EventKind::Abandoned,
            Some(ts),
        ) => update(slack, &console, &ts, conv, ingest).await?,
        (EventKind::MessageCreated, Some(ts)) => {
            if let Some(m) = &event.data.message
                && m.sender == SenderKind::Visitor
                && !m.internal
            {
                let who = conv.contact.name.as_deref().unwrap_or("Visitor");
                in_thread(
                    slack,
                    &console,
                    &ts,
                    format!("*{}*: {}", escape(who), escape(&m.text)),
                )
                .await?;
            }
        }
        _ => {}
    }
    Ok(())
}

async fn update(
    slack: &SlackChannel,
    console: &str,
    ts: &str,
    conv: &ConversationView,
    ingest: &Arc<dyn Ingest>,
) -> Result<()> {
    let content = post_content(conv, &summary(ingest, &conv.id).await?);
    let req = SlackApiChatUpdateRequest::new(console.into(), content, ts.into());
    let session = slack.session();
    slack
        .call("chat.update", || session.chat_update(&req))
        .await?;
    Ok(())
}

async fn in_thread(slack: &SlackChannel, console: &str, ts: &str, text: String) -> Result<()> {
    let req = SlackApiChatPostMessageRequest::new(
        console.into(),
        SlackMessageContent::new().with_text(text),
    )
    .with_thread_ts(ts.into());
    let session = slack.session();
    slack
        .call("chat.postMessage", || session.chat_post_message(&req))
        .await?;
    Ok(())
}

async fn summary(ingest: &Arc<dyn Ingest>, conversation_id: &str) -> Result<String> {
    let recent = ingest
        .recent_messages(conversation_id, SUMMARY_MESSAGES)
        .await?;
    let lines: Vec<String> = recent
        .iter()
        .filter(|m| {
            matches!(
                m.sender,
                SenderKind::Visitor | SenderKind::Bot | SenderKind::Agent
            )
        })
        .map(|m| {
            let who = match m.sender {
                SenderKind::Visitor => "Visitor".to_owned(),
                SenderKind::Bot => "Bot".to_owned(),
                _ => m
                    .author
                    .as_ref()
                    .map(|a| a.name.clone())
                    .unwrap_or_else(|| "Agent".into()),
            };
            let mut text: String = m.text.chars().take(SUMMARY_CHARS).collect();
            if m.text.chars().count() > SUMMARY_CHARS {
                text.push('…');
            }
            format!("> *{who}*: {}", escape(&text.replace('\n', " ")))
        })
        .collect();
    Ok(lines.join("\n"))
}

/// The status line of a post.
pub(crate) fn status_line(conv: &ConversationView) -> String {
    match (conv.status, &conv.assignee) {
        (Status::Waiting, _) => ":hourglass_flowing_sand: Waiting for an agent".into(),
        (Status::Active, Some(a)) => format!(":speech_balloon: Claimed by {}", escape(&a.name)),
        (Status::Active, None) => ":speech_balloon: With an agent".into(),
        (Status::Resolved, _) => ":white_check_mark: Resolved".into(),
        (Status::Bot, _) => ":robot_face: Back with the bot".into(),
    }
}

/// The buttons a status allows.
pub(crate) fn buttons(status: Status) -> Vec<ConsoleAction> {
    match status {
        Status::Waiting => vec![ConsoleAction::Claim, ConsoleAction::Resolve],
        Status::Active => vec![ConsoleAction::HandBack, ConsoleAction::Resolve],
        Status::Bot => vec![ConsoleAction::Claim],
        Status::Resolved => vec![],
    }
}

fn label(a: ConsoleAction) -> &'static str {
    match a {
        ConsoleAction::Claim => "Claim",
        ConsoleAction::HandBack => "Hand back",
        ConsoleAction::Resolve => "Resolve",
    }
}

pub(crate) fn post_content(conv: &ConversationView, summary: &str) -> SlackMessageContent {
    let who = conv
        .contact
        .name
        .clone()
        .or(conv.contact.email.clone())
        .unwrap_or_else(|| "A visitor".into());
    let email = conv
        .contact
        .email
        .as_deref()
        .map(|e| format!(" ({})", escape(e)))
        .unwrap_or_default();
    let reason = conv
        .handover
        .as_ref()
        .map(|h| h.reason.to_string())
        .unwrap_or_else(|| "manual".into());
    let headline = format!(
        "*{}*{email} on {} needs a human — reason: `{}`",
        escape(&who),
        conv.channel,
        escape(&reason)
    );
    let status = status_line(conv);
    let text = format!("{headline}\n{status}");
    let mut blocks: Vec<Value> =
        vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": headline}})];
    if !summary.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": summary}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": status}]}));
    let elements: Vec<Value> = buttons(conv.status)
        .into_iter()
        .map(|a| {
            let mut b = json!({
                "type": "button", "action_id": a.action_id(), "value": conv.id,
                "text": {"type": "plain_text", "text": label(a)},
            });
            if a == ConsoleAction::Claim {
                b["style"] = json!("primary");
            }
            b
        })
        .collect();
    if !elements.is_empty() {
        blocks.push(json!({"type": "actions", "block_id": "baton_console", "elements": elements}));
    }
    let content = SlackMessageContent::new().with_text(text);
    match serde_json::from_value::<Vec<SlackBlock>>(Value::Array(blocks)) {
        Ok(b) => content.with_blocks(b),
        Err(_) => content,
    }
}
