//! The bot seam: what the runtime asks a bot, and a stand-in until the real one lands.

use async_trait::async_trait;
use baton_model::{Action, ActionKind, Conversation, Message, Reason};

/// What the bot is asked on one visitor turn.
pub struct BotTurn<'a> {
    pub bot_id: &'a str,
    pub conversation: &'a Conversation,
    /// Recent messages, oldest first, ending with the visitor's.
    pub history: &'a [Message],
    pub text: &'a str,
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

/// **Stand-in bot** (named as such in the README): acknowledges what the
/// visitor wrote and offers the "Talk to a human" button. It exists so that
/// the runtime, the hand-over and the channels can be exercised end to end
/// before the built-in knowledge-base bot lands; it has no knowledge base and
/// fires no triggers of its own.
#[derive(Debug, Default)]
pub struct StandInBot;

#[async_trait]
impl Bot for StandInBot {
    async fn reply(&self, turn: BotTurn<'_>) -> BotReply {
        let quoted: String = turn.text.chars().take(200).collect();
        BotReply {
            messages: vec![BotMessage {
                text: format!(
                    "Thanks! You said: \u{201c}{quoted}\u{201d}. I'm a stand-in bot for now; \
                     press \u{201c}Talk to a human\u{201d} to reach the team."
                ),
                actions: vec![Action {
                    id: "request_human".to_owned(),
                    label: "Talk to a human".to_owned(),
                    kind: ActionKind::RequestHuman,
                    url: None,
                }],
            }],
            escalate: None,
        }
    }
}
