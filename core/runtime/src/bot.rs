//! The bot seam: what the runtime asks a bot, and the built-in knowledge-base
//! bot behind it (`baton-bot`).

use crate::DEFAULT_BOT;
use crate::config::{BotConfig, Config, HandoverConfig};
use async_trait::async_trait;
use baton_bot::kb::Entry;
use baton_bot::{BuiltinBot, Counters, KbError, KnowledgeBase, TriggerConfig};
use baton_model::{Action, Conversation, Message, Reason};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What the bot is asked on one visitor turn.
pub struct BotTurn<'a> {
    pub bot_id: &'a str,
    pub conversation: &'a Conversation,
    /// Recent messages, oldest first, ending with the visitor's; read only
    /// for a bot that [`Bot::wants_history`] (an LLM), else empty.
    pub history: &'a [Message],
    pub text: &'a str,
    /// The hand-over triggers' counts since the last hand-over.
    pub counters: Counters,
    /// The bot's live settings.
    pub settings: &'a BotConfig,
    /// Called with the text so far while a reply is being written (streaming).
    pub draft: &'a (dyn Fn(&str) + Send + Sync),
    /// Power-up plugins the bot may call (an LLM sees them as tools).
    pub tools: &'a [Tool],
}

/// A power-up plugin offered to the bot as a tool.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    /// The plugin's id.
    pub plugin: String,
    /// The tool's name (from the plugin's `describe()`).
    pub name: String,
    pub description: String,
    /// A JSON schema of the arguments.
    pub parameters: serde_json::Value,
}

/// The bot's choice to run a power-up, with its arguments as JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PowerUpCall {
    pub plugin: String,
    pub arguments: String,
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
    /// What the turn was about (an intent or entry id), for routing.
    pub topic: Option<String>,
    /// Where the hand-over should go, when a plugin said so.
    pub department: Option<String>,
    /// A power-up to run now (an LLM's tool call).
    pub power_up: Option<PowerUpCall>,
    /// The trigger counts after this turn, to keep with the conversation.
    pub counters: Option<Counters>,
    /// The power-up now waiting for the visitor's answer (`Some(None)`: none
    /// any more), to keep with the conversation.
    pub power_up_session: Option<Option<String>>,
}

/// A bot. It only proposes replies: the runtime decides whether they may be sent.
#[async_trait]
pub trait Bot: Send + Sync {
    async fn reply(&self, turn: BotTurn<'_>) -> BotReply;

    /// Whether the bot reads the conversation's recent messages (an LLM
    /// does; the knowledge-base bot keeps counters instead).
    fn wants_history(&self) -> bool {
        false
    }

    /// The knowledge base behind this bot, if it has one the API may edit.
    fn knowledge(&self) -> Option<&KnowledgeBot> {
        None
    }
}

/// The built-in knowledge-base bot, one per configured bot id (each may
/// have its own knowledge folder). Its triggers follow the bot's live
/// `[bot.handover]` settings, read on every turn.
#[derive(Debug)]
pub struct KnowledgeBot {
    /// Each bot as it answers now: its files with the API's edits on top.
    bots: RwLock<HashMap<String, Arc<BuiltinBot>>>,
    /// Each bot's knowledge base as loaded from its files.
    files: HashMap<String, Arc<KnowledgeBase>>,
    /// The extra "talk to a human" phrases each bot answers with now: the
    /// live `[bot.handover] phrases`, followed on the first turn after a change.
    phrases: RwLock<HashMap<String, Vec<String>>>,
    /// One API edit at a time: read, check, save and install together.
    edit_lock: tokio::sync::Mutex<()>,
}

impl KnowledgeBot {
    /// Loads every bot's knowledge base: its `knowledge` folder, or the sample.
    pub fn from_config(config: &Config) -> Result<Self, KbError> {
        let mut bots = HashMap::new();
        let mut files = HashMap::new();
        let mut phrases = HashMap::new();
        let all = std::iter::once((DEFAULT_BOT, &config.bot))
            .chain(config.bots.iter().map(|(id, b)| (id.as_str(), b)));
        for (id, bot) in all {
            let kb = match &bot.knowledge {
                Some(dir) => KnowledgeBase::load_dir(dir)?,
                None => KnowledgeBase::sample()?,
            };
            let built = BuiltinBot::new(kb.with_edits(&[])?, &bot.handover.phrases);
            bots.insert(id.to_owned(), Arc::new(built));
            files.insert(id.to_owned(), Arc::new(kb));
            phrases.insert(id.to_owned(), bot.handover.phrases.clone());
        }
        Ok(Self {
            bots: RwLock::new(bots),
            files,
            phrases: RwLock::new(phrases),
            edit_lock: tokio::sync::Mutex::new(()),
        })
    }

    fn bot(&self, bot_id: &str) -> Option<Arc<BuiltinBot>> {
        let bots = self.bots.read().unwrap_or_else(|e| e.into_inner());
        bots.get(bot_id).or_else(|| bots.get(DEFAULT_BOT)).cloned()
    }

    /// The bot, answering with `phrases` (the live settings'): when an admin
    /// changed them, the bot is rebuilt over the same knowledge base first.
    fn bot_with(&self, bot_id: &str, phrases: &[String]) -> Option<Arc<BuiltinBot>> {
        let key = if self.files.contains_key(bot_id) {
            bot_id
        } else {
            DEFAULT_BOT
        };
        let current = {
            let known = self.phrases.read().unwrap_or_else(|e| e.into_inner());
            known.get(key).is_some_and(|p| p.as_slice() == phrases)
        };
        if current {
            return self.bot(key);
        }
        let mut bots = self.bots.write().unwrap_or_else(|e| e.into_inner());
        let rebuilt = Arc::new(bots.get(key)?.with_phrases(phrases));
        bots.insert(key.to_owned(), rebuilt.clone());
        self.phrases
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), phrases.to_vec());
        Some(rebuilt)
    }

    /// A bot's entries as it answers now, and the ids its files hold.
    pub fn entries(&self, bot_id: &str) -> Option<(Vec<Entry>, Vec<String>)> {
        let files = self.files.get(bot_id)?;
        let bots = self.bots.read().unwrap_or_else(|e| e.into_inner());
        let now = bots.get(bot_id)?.knowledge().entries().to_vec();
        Some((now, files.entries().iter().map(|e| e.id.clone()).collect()))
    }

    /// Held across one edit (read the stored edits, check, save, install),
    /// so that two admins saving at once both keep their change.
    pub async fn edit(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.edit_lock.lock().await
    }

    /// The bot's files with `edits` on top; checked, not yet live.
    pub fn check_edits(
        &self,
        bot_id: &str,
        edits: &[(String, Option<Entry>)],
    ) -> Result<KnowledgeBase, KbError> {
        let files = self.files.get(bot_id).ok_or_else(|| KbError::Invalid {
            file: bot_id.to_owned(),
            message: "no such bot".into(),
        })?;
        files.with_edits(edits)
    }

    /// Makes `kb` (from [`Self::check_edits`]) what the bot answers from.
    pub fn install(&self, bot_id: &str, kb: KnowledgeBase) {
        let phrases = self
            .phrases
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(bot_id)
            .cloned()
            .unwrap_or_default();
        let mut bots = self.bots.write().unwrap_or_else(|e| e.into_inner());
        bots.insert(bot_id.to_owned(), Arc::new(BuiltinBot::new(kb, &phrases)));
    }

    /// The entries closest to `text`, best first: context for an LLM.
    pub fn context(&self, bot_id: &str, text: &str, limit: usize) -> Vec<Entry> {
        let Some(bot) = self.bot(bot_id) else {
            return vec![];
        };
        let kb = bot.knowledge();
        kb.search(text, limit)
            .into_iter()
            .filter(|h| h.confidence > 0.1)
            .map(|h| kb.entry(h.entry).clone())
            .collect()
    }

    /// How many entries each bot knows, for the start-up log.
    pub fn sizes(&self) -> Vec<(String, usize)> {
        let bots = self.bots.read().unwrap_or_else(|e| e.into_inner());
        let mut sizes: Vec<(String, usize)> = bots
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

#[async_trait]
impl Bot for KnowledgeBot {
    async fn reply(&self, turn: BotTurn<'_>) -> BotReply {
        let Some(bot) = self.bot_with(turn.bot_id, &turn.settings.handover.phrases) else {
            return BotReply::default();
        };
        let cfg = trigger_config(&turn.settings.handover);
        let (reply, counters) = bot.respond_with(&cfg, turn.counters, turn.text);
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
            topic: reply.topic,
            counters: Some(counters),
            ..BotReply::default()
        }
    }

    fn knowledge(&self) -> Option<&KnowledgeBot> {
        Some(self)
    }
}
