//! The bot seam: what the runtime asks a bot, and the built-in knowledge-base
//! bot behind it (`baton-bot`).

use crate::DEFAULT_BOT;
use crate::config::{BotConfig, Config, HandoverConfig};
use async_trait::async_trait;
use baton_bot::{BuiltinBot, KbError, KnowledgeBase, TriggerConfig};
use baton_model::{Action, Conversation, Message, Reason, SenderKind};
use std::collections::HashMap;
use std::sync::Arc;

/// What the bot is asked on one visitor turn.
pub struct BotTurn<'a> {
    pub bot_id: &'a str,
    pub conversation: &'a Conversation,
    /// Recent messages, oldest first, ending with the visitor's.
    pub history: &'a [Message],
    pub text: &'a str,
    /// The bot's live settings.
    pub settings: &'a BotConfig,
}

/// One message the bot wants to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotMessage {
    pub text: String,
    pub actions: Vec<Action>,
}

/// The bot's answer: messages, and possibly the verdict that a human must take over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BotReply {
    pub messages: Vec<BotMessage>,
    pub escalate: Option<Reason>,
}

/// A bot. It only proposes replies: the runtime decides whether they may be sent.
#[async_trait]
pub trait Bot: Send + Sync {
    async fn reply(&self, turn: BotTurn<'_>) -> BotReply;
}

/// The built-in knowledge-base bot, one per configured bot id (each may
/// have its own knowledge folder). Its triggers follow the bot's live
/// `[bot.handover]` settings, read on every turn.
#[derive(Debug)]
pub struct KnowledgeBot {
    bots: HashMap<String, Arc<BuiltinBot>>,
}

impl KnowledgeBot {
    /// Loads every bot's knowledge base: its `knowledge` folder, or the sample.
    pub fn from_config(config: &Config) -> Result<Self, KbError> {
        let mut bots = HashMap::new();
        let all = std::iter::once((DEFAULT_BOT, &config.bot))
            .chain(config.bots.iter().map(|(id, b)| (id.as_str(), b)));
        for (id, bot) in all {
            let kb = match &bot.knowledge {
                Some(dir) => KnowledgeBase::load_dir(dir)?,
                None => KnowledgeBase::sample()?,
            };
            let built = BuiltinBot::new(kb, &bot.handover.phrases);
            bots.insert(id.to_owned(), Arc::new(built));
        }
        Ok(Self { bots })
    }

    /// How many entries each bot knows, for the start-up log.
    pub fn sizes(&self) -> Vec<(String, usize)> {
        let mut sizes: Vec<(String, usize)> = self
            .bots
            .iter()
            .map(|(id, b)| (id.clone(), b.knowledge().entries().len()))
            .collect();
        sizes.sort();
        sizes
    }
}

/// The trigger settings of a bot's `[bot.handover]`.
pub fn trigger_config(h: &HandoverConfig) -> TriggerConfig {
    TriggerConfig {
        enabled: h.enabled,
        cycle_count: h.cycle_count,
        repeated_requests: h.repeated_requests,
        failed_to_resolve: h.failed_to_resolve,
        lack_of_information: h.lack_of_information,
        frustration: h.frustration.0,
        intents: h.intents.clone(),
    }
}

/// The visitor's messages since the conversation last changed hands (an
/// agent or system message marks the change), oldest first, without the
/// newest one, which is the turn itself.
fn since_last_hand_over(history: &[Message]) -> Vec<&str> {
    let start = history
        .iter()
        .rposition(|m| matches!(m.sender, SenderKind::Agent | SenderKind::System))
        .map_or(0, |i| i + 1);
    let mut visitor: Vec<&str> = history[start..]
        .iter()
        .filter(|m| m.sender == SenderKind::Visitor)
        .map(|m| m.text.as_str())
        .collect();
    visitor.pop();
    visitor
}

#[async_trait]
impl Bot for KnowledgeBot {
    async fn reply(&self, turn: BotTurn<'_>) -> BotReply {
        let Some(bot) = self
            .bots
            .get(turn.bot_id)
            .or_else(|| self.bots.get(DEFAULT_BOT))
        else {
            return BotReply::default();
        };
        let cfg = trigger_config(&turn.settings.handover);
        let earlier = since_last_hand_over(turn.history);
        let reply = bot.respond(&cfg, &earlier, turn.text);
        BotReply {
            messages: reply
                .messages
                .into_iter()
                .map(|m| BotMessage {
                    text: m.text,
                    actions: m.actions,
                })
                .collect(),
            escalate: reply.escalate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_model::Timestamp;

    fn message(seq: i64, sender: SenderKind, text: &str) -> Message {
        Message {
            id: seq.to_string(),
            conversation_id: "c".into(),
            seq,
            sender,
            author: None,
            text: text.into(),
            internal: false,
            actions: vec![],
            attachments: vec![],
            client_id: None,
            channel_message_id: None,
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn the_count_restarts_at_each_hand_over() {
        use SenderKind::*;
        let history = [
            message(1, Bot, "hello"),
            message(2, Visitor, "one"),
            message(3, Bot, "?"),
            message(4, System, "Alice left the conversation"),
            message(5, Visitor, "two"),
            message(6, Bot, "?"),
            message(7, Visitor, "three"),
        ];
        assert_eq!(since_last_hand_over(&history), ["two"]);
        assert!(since_last_hand_over(&history[..2]).is_empty());
    }
}
