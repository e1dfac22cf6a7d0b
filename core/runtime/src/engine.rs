//! The runtime proper: every write to a conversation goes through here.

use crate::bot::{Bot, BotMessage, BotReply, BotTurn};
use crate::bus::EventBus;
use crate::config::{BotConfig, Config};
use crate::webhooks::Dispatcher;
use crate::{Clock, DEFAULT_BOT, Error, Result};
use baton_channel::{Channel, Inbound, Ingested};
use baton_model::wire::{ConversationView, EventData, EventEnvelope, MessageView};
use baton_model::{
    ActionKind, AgentRef, ChannelKind, Conversation, Effect, EventKind, Input, LEFT_MESSAGE_TAG,
    Message, Notice, Reason, SenderKind, Status, Timestamp, bot_may_speak, step,
};
use baton_store::{Backend, NewContact, NewConversation, NewMessage, Store, StoredEvent, Tx};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// How often a transition retries after losing a compare-and-swap before giving up.
const MAX_CAS_RETRIES: usize = 200;

/// What starting a conversation needs.
#[derive(Clone, Debug)]
pub struct StartConversation {
    pub bot_id: String,
    pub channel: ChannelKind,
    pub contact: NewContact,
    pub thread_key: Option<String>,
    pub visitor_token_hash: Option<String>,
}

/// How long a staff member counts as present after the last sign of life.
/// An open inbox sends one at least every [`PRESENCE_HEARTBEAT_MS`].
pub const PRESENCE_TIMEOUT_MS: i64 = 90_000;
/// How often an open inbox stream marks its user as present.
pub const PRESENCE_HEARTBEAT_MS: i64 = 30_000;

/// The engine. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: Config,
    /// Every bot's live settings: `baton.toml` with the admin's changes on top.
    bots: RwLock<BTreeMap<String, Arc<BotConfig>>>,
    clock: Clock,
    bus: EventBus,
    bot: Arc<dyn Bot>,
    channels: RwLock<HashMap<ChannelKind, Arc<dyn Channel>>>,
    webhook_wake: Arc<Notify>,
    /// One automatic-assignment run at a time on this node.
    assign_lock: tokio::sync::Mutex<()>,
    /// For plugins' host calls (their manifests allow-list the hosts).
    http: reqwest::Client,
    /// For URLs entered through the API: webhooks and `webhook` actions.
    /// It refuses internal addresses unless the operator allows them.
    webhook_http: Option<reqwest::Client>,
    /// A bot reply as it is being written (LLM streaming); ephemeral, this node only.
    drafts: tokio::sync::broadcast::Sender<Draft>,
    /// The WebAssembly plugin host, once installed.
    plugins: std::sync::OnceLock<Arc<baton_plugins::PluginHost>>,
    /// Wakes the plugin-action queue.
    plugin_wake: Arc<Notify>,
    /// Channel delivery queues, one per conversation being delivered to.
    deliveries: crate::delivery::Deliveries,
    /// Turns true when the node stops; background work that holds leases watches it.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Background tasks that [`Runtime::shutdown`] waits for.
    stoppable: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn outbound_policy(config: &Config) -> crate::outbound::OutboundPolicy {
    crate::outbound::OutboundPolicy {
        allow_private: config.security.allow_private_webhooks,
    }
}

/// The text a bot has written so far in a streamed reply.
#[derive(Clone, Debug)]
pub struct Draft {
    pub conversation_id: String,
    pub text: String,
}

/// Writes made in one transaction, to announce once it commits.
#[derive(Default)]
struct Committed {
    events: Vec<StoredEvent>,
    outbound: Vec<Message>,
}

impl Runtime {
    pub fn new(store: Store, config: Config, bot: Arc<dyn Bot>) -> Self {
        Self::with_clock(store, config, bot, Clock::system())
    }

    pub fn with_clock(store: Store, config: Config, bot: Arc<dyn Bot>, clock: Clock) -> Self {
        let bus = EventBus::new(store.backend());
        let mut bots: BTreeMap<String, Arc<BotConfig>> = config
            .bots
            .iter()
            .map(|(id, bot)| (id.clone(), Arc::new(bot.clone())))
            .collect();
        bots.insert(DEFAULT_BOT.to_owned(), Arc::new(config.bot.clone()));
        let webhook_http = crate::outbound::client(outbound_policy(&config))
            .inspect_err(|e| tracing::error!(error = %e, "webhooks and webhook actions are off"))
            .ok();
        Self {
            inner: Arc::new(Inner {
                store,
                bots: RwLock::new(bots),
                config,
                clock,
                bus,
                bot,
                channels: RwLock::new(HashMap::new()),
                webhook_wake: Arc::new(Notify::new()),
                assign_lock: tokio::sync::Mutex::new(()),
                http: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default(),
                webhook_http,
                drafts: tokio::sync::broadcast::channel(256).0,
                plugins: std::sync::OnceLock::new(),
                plugin_wake: Arc::new(Notify::new()),
                deliveries: Default::default(),
                stopping: tokio::sync::watch::channel(false).0,
                stoppable: std::sync::Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The bot behind every conversation.
    pub(crate) fn bot_engine(&self) -> &dyn Bot {
        self.inner.bot.as_ref()
    }

    /// The plugin host, when plugins are installed.
    pub fn plugins(&self) -> Option<&Arc<baton_plugins::PluginHost>> {
        self.inner.plugins.get()
    }

    /// Installs the plugin host (once; later calls are ignored).
    pub fn install_plugins(&self, host: Arc<baton_plugins::PluginHost>) {
        let _ = self.inner.plugins.set(host);
    }

    pub(crate) fn plugin_wake(&self) -> &Notify {
        &self.inner.plugin_wake
    }

    pub(crate) fn assign_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.assign_lock
    }

    pub(crate) fn deliveries(&self) -> &crate::delivery::Deliveries {
        &self.inner.deliveries
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The client for webhooks and `webhook` actions (see [`crate::outbound`]).
    pub(crate) fn webhook_http(&self) -> Option<&reqwest::Client> {
        self.inner.webhook_http.as_ref()
    }

    /// What outbound URLs entered through the API may reach.
    pub fn outbound_policy(&self) -> crate::outbound::OutboundPolicy {
        outbound_policy(&self.inner.config)
    }

    /// Streamed bot replies as they are written, for the widget.
    pub fn drafts(&self) -> tokio::sync::broadcast::Receiver<Draft> {
        self.inner.drafts.subscribe()
    }

    /// Whether any queue is assigned automatically (else nothing to do on a freed seat).
    fn auto_assignment(&self) -> bool {
        use baton_model::routing::Assignment;
        self.inner.config.routing.assignment != Assignment::Manual
            || self
                .inner
                .config
                .departments
                .iter()
                .any(|d| d.assignment != Assignment::Manual)
    }

    /// The live settings of a bot; unknown ids fall back to the default bot.
    pub fn bot_config(&self, bot_id: &str) -> Arc<BotConfig> {
        let bots = self.inner.bots.read().unwrap_or_else(|e| e.into_inner());
        bots.get(bot_id)
            .or_else(|| bots.get(DEFAULT_BOT))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether a bot with this id exists.
    pub fn has_bot(&self, bot_id: &str) -> bool {
        let bots = self.inner.bots.read().unwrap_or_else(|e| e.into_inner());
        bots.contains_key(bot_id)
    }

    /// Every bot with its live settings, by id.
    pub fn bots(&self) -> Vec<(String, Arc<BotConfig>)> {
        let bots = self.inner.bots.read().unwrap_or_else(|e| e.into_inner());
        bots.iter().map(|(id, b)| (id.clone(), b.clone())).collect()
    }

    /// Replaces a bot's live settings (the caller has saved them).
    pub(crate) fn set_bot_config(&self, bot_id: &str, bot: BotConfig) {
        let mut bots = self.inner.bots.write().unwrap_or_else(|e| e.into_inner());
        bots.insert(bot_id.to_owned(), Arc::new(bot));
    }

    pub fn register_channel(&self, channel: Arc<dyn Channel>) {
        let mut channels = self
            .inner
            .channels
            .write()
            .unwrap_or_else(|p| p.into_inner());
        channels.insert(channel.kind(), channel);
    }

    pub fn channels(&self) -> Vec<Arc<dyn Channel>> {
        let channels = self
            .inner
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner());
        channels.values().cloned().collect()
    }

    pub(crate) fn channel(&self, kind: ChannelKind) -> Option<Arc<dyn Channel>> {
        let channels = self
            .inner
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner());
        channels.get(&kind).cloned()
    }

    /// Stops the background work that holds leases in the database (webhook
    /// deliveries, plugin actions), so that another node, or this one started
    /// again, picks up at once what this one had under way.
    /// Waits a few seconds at most.
    pub async fn shutdown(&self) {
        self.inner.stopping.send_replace(true);
        let tasks = std::mem::take(
            &mut *self
                .inner
                .stoppable
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for task in tasks {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                warn!("a background task did not stop in time");
            }
        }
    }

    /// Starts the background work: webhook delivery, the cross-node event
    /// listener, the abandonment sweep and each channel's receive loop.
    ///
    /// On PostgreSQL the listener's starting point is read here, before the
    /// node serves anything: every event committed from now on reaches this
    /// node's subscribers, however late the listener task first runs.
    pub async fn start_background(&self) -> Result<()> {
        let events_from = match self.inner.store.backend() {
            Backend::Postgres => Some(self.inner.store.last_event_seq().await?),
            Backend::Sqlite => None,
        };
        let dispatcher = Dispatcher {
            store: self.inner.store.clone(),
            config: self.inner.config.webhooks.clone(),
            clock: self.inner.clock.clone(),
            wake: self.inner.webhook_wake.clone(),
            http: self.inner.webhook_http.clone(),
            policy: self.outbound_policy(),
        };
        let dispatching = tokio::spawn(dispatcher.run(self.inner.stopping.subscribe()));
        let acting = tokio::spawn(self.clone().plugin_jobs(self.inner.stopping.subscribe()));
        self.inner
            .stoppable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend([dispatching, acting]);
        if let Some(from) = events_from {
            tokio::spawn(
                self.inner
                    .bus
                    .clone()
                    .listen_postgres(self.inner.store.clone(), from),
            );
        }
        if self.auto_assignment() {
            // Hours open and agents come back without an event to say so.
            let rt = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(15)).await;
                    rt.assign_waiting().await;
                }
            });
        }
        let abandon_after = self.inner.config.conversations.abandon_after;
        if !abandon_after.is_zero() {
            let rt = self.clone();
            tokio::spawn(async move { rt.sweep_abandoned(abandon_after).await });
        }
        self.start_channels();
        Ok(())
    }

    async fn sweep_abandoned(&self, after: Duration) {
        let period = (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            tokio::time::sleep(period).await;
            let cutoff = self.now().plus_millis(-(after.as_millis() as i64));
            let ids = match self.inner.store.waiting_since_before(cutoff).await {
                Ok(ids) => ids,
                Err(e) => {
                    warn!(error = %e, "cannot look for abandoned conversations");
                    continue;
                }
            };
            for id in ids {
                match self.apply(&id, |_| Input::Abandon).await {
                    Ok(_) => info!(conversation_id = %id, "conversation abandoned"),
                    // Claimed meanwhile: nothing to abandon.
                    Err(Error::Transition(_)) => {}
                    Err(e) => warn!(conversation_id = %id, error = %e, "cannot abandon"),
                }
            }
        }
    }

    // ----- visitors -------------------------------------------------------

    /// Creates a conversation in `bot` status, records `conversation.started`
    /// and lets the bot greet.
    pub async fn start_conversation(&self, start: StartConversation) -> Result<Conversation> {
        self.start_conversation_with(start, true).await
    }

    async fn start_conversation_with(
        &self,
        start: StartConversation,
        greet: bool,
    ) -> Result<Conversation> {
        if !self.has_bot(&start.bot_id) {
            return Err(Error::NotFound("bot"));
        }
        let now = self.now();
        let mut tx = self.inner.store.begin().await?;
        let conv = tx
            .create_conversation(
                &NewConversation {
                    bot_id: start.bot_id.clone(),
                    channel: start.channel,
                    contact: start.contact,
                    thread_key: start.thread_key,
                    visitor_token_hash: start.visitor_token_hash,
                },
                now,
            )
            .await?;
        let mut done = Committed::default();
        let greeting = self.bot_config(&conv.bot_id).greeting.clone();
        if greet && !greeting.trim().is_empty() {
            let msg = tx
                .append_message(
                    &conv.id,
                    &self.bot_message(&conv.bot_id, greeting, vec![]),
                    now,
                )
                .await?;
            done.outbound.push(msg);
        }
        let snapshot = self.snapshot(&mut tx, &conv.id).await?;
        done.events
            .push(insert_event(&mut tx, EventKind::Started, &snapshot, None, now).await?);
        for m in &done.outbound {
            done.events.push(
                insert_event(&mut tx, EventKind::MessageCreated, &snapshot, Some(m), now).await?,
            );
        }
        tx.commit().await?;
        info!(conversation_id = %conv.id, channel = %conv.channel, "conversation started");
        self.after_commit(&snapshot, done);
        Ok(snapshot)
    }

    /// The visitor pressed a button: "talk to a human" or a quick reply.
    pub async fn visitor_action(
        &self,
        conversation_id: &str,
        action: &str,
    ) -> Result<Conversation> {
        let conv = self.conversation(conversation_id).await?;
        if action == "request_human" {
            return self.request_human(conv).await;
        }
        if action == baton_channel::START_ACTION {
            // Opening the conversation greeted already; `/start` again changes nothing.
            return Ok(conv);
        }
        // A quick reply is the visitor saying the button's label.
        let recent = self
            .inner
            .store
            .messages(conversation_id, (conv.last_seq - 20).max(0), false, 50)
            .await?;
        let label = recent
            .iter()
            .rev()
            .filter(|m| m.sender == SenderKind::Bot)
            .flat_map(|m| m.actions.iter())
            .find(|a| a.id == action && a.kind == ActionKind::Reply)
            .map(|a| a.label.clone())
            .ok_or_else(|| Error::Invalid(format!("unknown action `{action}`")))?;
        let new = NewMessage::text(SenderKind::Visitor, label);
        Ok(self
            .store_visitor_message(&conv.id, new)
            .await?
            .conversation)
    }

    async fn request_human(&self, conv: Conversation) -> Result<Conversation> {
        self.request_human_with(conv, true).await
    }

    async fn request_human_with(
        &self,
        conv: Conversation,
        collect_contact: bool,
    ) -> Result<Conversation> {
        let bot = self.bot_config(&conv.bot_id);
        let handover = &bot.handover;
        if !handover.enabled {
            return Err(Error::Invalid(
                "hand-over to a human is switched off for this bot".into(),
            ));
        }
        match conv.state.status {
            // Already with (or on the way to) a human: pressing again changes nothing.
            Status::Waiting | Status::Active => Ok(conv),
            Status::Resolved | Status::Bot => {
                if conv.state.status == Status::Resolved {
                    let reopened = self.apply(&conv.id, |_| Input::VisitorMessage).await?;
                    // Inside a pause window a reopen goes straight to the team.
                    if reopened.state.status != Status::Bot {
                        return Ok(reopened);
                    }
                }
                let reason = Reason::known(Reason::VISITOR_REQUEST);
                // The button has no topic: the bot's own department takes it.
                self.inner.store.set_topic(&conv.id, None).await?;
                if collect_contact
                    && self
                        .start_collecting(&conv.id, &reason, None, vec![])
                        .await?
                {
                    return self.conversation(&conv.id).await;
                }
                self.escalate(&conv.id, reason, None, None).await
            }
        }
    }

    /// Starts the contact collector before a hand-over when the bot asks for
    /// details the contact lacks: stores the question (as the bot, under the
    /// who-may-speak gate) and the pending hand-over. False when nothing is
    /// missing, and the hand-over should go ahead.
    async fn start_collecting(
        &self,
        conversation_id: &str,
        reason: &Reason,
        topic: Option<String>,
        preface: Vec<BotMessage>,
    ) -> Result<bool> {
        let conv = self.conversation(conversation_id).await?;
        let bot = self.bot_config(&conv.bot_id);
        let Some(baton_bot::Next::Ask { state, question }) = baton_bot::collect::start(
            &bot.handover.collect_contact.0,
            known_details(&conv),
            reason.as_str(),
            topic,
        ) else {
            return Ok(false);
        };
        let json = serde_json::to_string(&state)
            .map_err(|e| Error::Invalid(format!("cannot store the collector: {e}")))?;
        let mut messages = preface;
        messages.push(BotMessage {
            text: question,
            actions: vec![],
        });
        // The question goes out only if the bot may speak (it may be paused,
        // or a human may have stepped in); if not, the hand-over goes ahead.
        if !self
            .store_bot_messages(conversation_id, &conv.bot_id, messages)
            .await?
        {
            return Ok(false);
        }
        self.inner
            .store
            .set_collecting(conversation_id, Some(&json))
            .await?;
        Ok(true)
    }

    /// The visitor answered the contact collector: save what is valid, then
    /// ask the next question or hand over.
    async fn collector_turn(
        &self,
        conv: &Conversation,
        pending: &str,
        text: &str,
    ) -> Result<BotReply> {
        let Ok(state) = serde_json::from_str::<baton_bot::Collecting>(pending) else {
            warn!(conversation_id = %conv.id, "unreadable collector state; dropped");
            self.inner.store.set_collecting(&conv.id, None).await?;
            return Ok(BotReply::default());
        };
        let bot = self.bot_config(&conv.bot_id);
        let (update, next) = baton_bot::collect::answer(
            &state,
            &bot.handover.collect_contact.0,
            known_details(conv),
            text,
        );
        if update != baton_bot::ContactUpdate::default() {
            self.inner
                .store
                .update_contact(
                    &conv.contact.id,
                    update.name.as_deref(),
                    update.email.as_deref(),
                    update.phone.as_deref(),
                )
                .await?;
        }
        let say = |text: String| BotMessage {
            text,
            actions: vec![],
        };
        Ok(match next {
            baton_bot::Next::Ask { state, question } => {
                let json = serde_json::to_string(&state)
                    .map_err(|e| Error::Invalid(format!("cannot store the collector: {e}")))?;
                self.inner
                    .store
                    .set_collecting(&conv.id, Some(&json))
                    .await?;
                BotReply {
                    messages: vec![say(question)],
                    ..BotReply::default()
                }
            }
            baton_bot::Next::HandOver {
                reason,
                topic,
                said,
            } => {
                self.inner.store.set_collecting(&conv.id, None).await?;
                BotReply {
                    messages: vec![say(said)],
                    escalate: Reason::new(reason).ok(),
                    topic,
                    ..BotReply::default()
                }
            }
        })
    }

    /// The leave-a-message form: the visitor's address (and name) go on the
    /// contact, the conversation joins the team's queue, and the text is stored
    /// there for whoever picks it up.
    pub async fn leave_message(
        &self,
        conversation_id: &str,
        name: Option<&str>,
        email: &str,
        text: Option<String>,
    ) -> Result<Conversation> {
        let limit = self.inner.config.limits.max_message_bytes;
        if text.as_ref().is_some_and(|t| t.len() > limit) {
            return Err(Error::TooLarge { limit });
        }
        let conv = self.conversation(conversation_id).await?;
        self.inner
            .store
            .update_contact(&conv.contact.id, name, Some(email), None)
            .await?;
        // Flag it for the inbox first: nothing after the hand-over may fail.
        if !conv.tags.iter().any(|t| t == LEFT_MESSAGE_TAG) && conv.tags.len() < 50 {
            let mut tags = conv.tags.clone();
            tags.push(LEFT_MESSAGE_TAG.to_owned());
            self.set_tags(&conv.id, &tags).await?;
        }
        // The form asked already: no collector questions on top.
        let conv = self
            .request_human_with(self.conversation(conversation_id).await?, false)
            .await?;

        if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
            self.store_visitor_message(&conv.id, NewMessage::text(SenderKind::Visitor, text))
                .await?;
        }
        self.conversation(conversation_id).await
    }

    /// Replaces a conversation's tags (trimmed, lower-cased, de-duplicated).
    pub async fn set_tags(&self, conversation_id: &str, tags: &[String]) -> Result<Conversation> {
        let mut clean: Vec<String> = Vec::new();
        for tag in tags {
            let tag = tag.trim().to_lowercase();
            if tag.is_empty() || tag.chars().count() > 50 {
                return Err(Error::Invalid("each tag must be 1 to 50 characters".into()));
            }
            if !clean.contains(&tag) {
                clean.push(tag);
            }
        }
        if clean.len() > 50 {
            return Err(Error::Invalid("at most 50 tags per conversation".into()));
        }
        self.conversation(conversation_id).await?;
        let mut tx = self.inner.store.begin().await?;
        tx.set_tags(conversation_id, &clean).await?;
        tx.commit().await?;
        self.conversation(conversation_id).await
    }

    /// Whether some agent who may answer is online: the widget offers a
    /// leave-a-message form when nobody is.
    pub async fn agents_available(&self) -> Result<bool> {
        Ok(self.availability(None).await? != baton_model::routing::Availability::Offline)
    }

    /// A staff member's presence as visitors should see it: what they chose,
    /// but `offline` once nothing has been heard from them for
    /// [`PRESENCE_TIMEOUT_MS`] (a closed laptop does not sign out).
    pub fn effective_presence(&self, user: &baton_store::User) -> baton_model::Presence {
        let fresh = user
            .last_seen_at
            .is_some_and(|seen| self.now().since(seen) <= PRESENCE_TIMEOUT_MS);
        if fresh {
            user.presence
        } else {
            baton_model::Presence::Offline
        }
    }

    /// Stores a visitor message (once, however often it is resent), reopens a
    /// resolved conversation, and lets the bot answer if it may.
    pub async fn ingest_inbound(&self, inbound: Inbound) -> Result<Ingested> {
        let limit = self.inner.config.limits.max_message_bytes;
        if inbound.text.len() > limit {
            return Err(Error::TooLarge { limit });
        }
        if inbound.text.trim().is_empty()
            && inbound.attachments.is_empty()
            && inbound.action.is_none()
        {
            return Err(Error::Invalid("message text must not be empty".into()));
        }
        let conv = self.conversation_for(&inbound).await?;
        if let Some(action) = &inbound.action {
            let conversation = self.visitor_action(&conv.id, action).await?;
            return Ok(Ingested {
                conversation,
                message: None,
                duplicate: false,
            });
        }
        let new = NewMessage {
            sender: SenderKind::Visitor,
            author: None,
            text: inbound.text,
            internal: false,
            actions: vec![],
            attachments: inbound.attachments,
            client_id: inbound.client_id,
            channel_message_id: inbound.channel_message_id,
        };
        if inbound.no_reply {
            return self.store_quietly(&conv.id, new).await;
        }
        self.store_visitor_message(&conv.id, new).await
    }

    async fn store_visitor_message(
        &self,
        conversation_id: &str,
        new: NewMessage,
    ) -> Result<Ingested> {
        self.store_inbound(conversation_id, new, true).await
    }

    /// Automated mail (an auto-reply, a bounce): kept in the conversation for
    /// the team to read, with no state change, no bot turn and nothing sent.
    async fn store_quietly(&self, conversation_id: &str, new: NewMessage) -> Result<Ingested> {
        self.store_inbound(conversation_id, new, false).await
    }

    /// Stores a visitor's message once; `answer` runs the lifecycle (reopen,
    /// unread, a bot turn when the bot may speak), otherwise it is only kept.
    async fn store_inbound(
        &self,
        conversation_id: &str,
        new: NewMessage,
        answer: bool,
    ) -> Result<Ingested> {
        for _ in 0..MAX_CAS_RETRIES {
            let conv = self.conversation(conversation_id).await?;
            let now = self.now();
            let (next, effects) = if answer {
                step(&conv.state, Input::VisitorMessage, now)?
            } else {
                (conv.state.clone(), Vec::new())
            };
            let mut tx = self.inner.store.begin().await?;
            if let Some(existing) = tx
                .find_duplicate(
                    &conv.id,
                    new.client_id.as_deref(),
                    new.channel_message_id.as_deref(),
                )
                .await?
            {
                tx.rollback().await?;
                debug!(conversation_id = %conv.id, seq = existing.seq, "dropped a repeated message");
                return Ok(Ingested {
                    conversation: conv,
                    message: Some(existing),
                    duplicate: true,
                });
            }
            if next != conv.state && !tx.cas_state(&conv.id, conv.version, &next, now).await? {
                continue;
            }
            let mut done = Committed::default();
            let message = tx.append_message(&conv.id, &new, now).await?;
            let snapshot = self
                .finish(
                    &mut tx,
                    &conv,
                    &effects,
                    vec![message.clone()],
                    &mut done,
                    now,
                )
                .await?;
            tx.commit().await?;
            self.after_commit(&snapshot, done);
            if answer && bot_may_speak(&snapshot.state, now) {
                let rt = self.clone();
                let id = snapshot.id.clone();
                tokio::spawn(async move { rt.bot_turn(&id).await });
            }
            return Ok(Ingested {
                conversation: snapshot,
                message: Some(message),
                duplicate: false,
            });
        }
        Err(Error::Conflict(
            "the conversation is too busy; try again".into(),
        ))
    }

    async fn conversation_for(&self, inbound: &Inbound) -> Result<Conversation> {
        if let Some(id) = &inbound.conversation_id {
            let conv = self.conversation(id).await?;
            // Email continues a web visitor's left message, from the address
            // they left (they reply to the agent's mail).
            let left_message_reply = inbound.channel == ChannelKind::Email
                && conv.accepts_mail_from(inbound.sender.email.as_deref());
            if conv.channel != inbound.channel && !left_message_reply {
                return Err(Error::Invalid("message arrived on another channel".into()));
            }
            return Ok(conv);
        }
        let store = &self.inner.store;
        if let Some(conv) = store
            .conversation_by_thread(inbound.channel, &inbound.thread_key)
            .await?
        {
            return Ok(conv);
        }
        let start = StartConversation {
            bot_id: DEFAULT_BOT.to_owned(),
            channel: inbound.channel,
            contact: NewContact {
                name: inbound.sender.name.clone(),
                email: inbound.sender.email.clone(),
                phone: None,
                external_id: Some(inbound.sender.external_id.clone()),
            },
            thread_key: Some(inbound.thread_key.clone()),
            visitor_token_hash: None,
        };
        // A mail thread opens without a chat greeting, and automated mail
        // never gets one.
        let greet = inbound.channel != ChannelKind::Email && !inbound.no_reply;
        match self.start_conversation_with(start, greet).await {
            Ok(conv) => Ok(conv),
            // Two first messages raced; the other one created it.
            Err(Error::Store(e)) if e.is_unique_violation() => store
                .conversation_by_thread(inbound.channel, &inbound.thread_key)
                .await?
                .ok_or(Error::NotFound("conversation")),
            Err(e) => Err(e),
        }
    }

    /// One bot turn: ask the bot, then store its answer only if it may still speak.
    async fn bot_turn(&self, conversation_id: &str) {
        if let Err(e) = self.try_bot_turn(conversation_id).await {
            warn!(%conversation_id, error = %e, "bot turn failed");
        }
    }

    async fn try_bot_turn(&self, conversation_id: &str) -> Result<()> {
        let conv = self.conversation(conversation_id).await?;
        if !bot_may_speak(&conv.state, self.now()) {
            return Ok(());
        }
        let history = self
            .inner
            .store
            .messages(conversation_id, (conv.last_seq - 30).max(0), false, 30)
            .await?;
        let Some(last) = history
            .iter()
            .rev()
            .find(|m| m.sender == SenderKind::Visitor)
        else {
            return Ok(());
        };
        let settings = self.bot_config(&conv.bot_id);
        let mut pending = self.inner.store.collecting(conversation_id).await?;
        // A human stepped in since the collector last asked: its question is moot.
        let last_human = history
            .iter()
            .rposition(|m| matches!(m.sender, SenderKind::Agent | SenderKind::System));
        let last_bot = history.iter().rposition(|m| m.sender == SenderKind::Bot);
        if pending.is_some() && last_human > last_bot {
            self.inner
                .store
                .set_collecting(conversation_id, None)
                .await?;
            pending = None;
        }
        // Likewise a power-up's question, once a human has spoken since.
        if last_human > last_bot && self.plugins().is_some() {
            self.inner
                .store
                .set_power_up_session(conversation_id, None, self.now())
                .await?;
        }
        let from_collector = pending.is_some();
        let plugin_reply = match pending {
            Some(_) => None,
            // Trigger plugins, then the power-up in progress or one the visitor named.
            None => self.plugin_turn(&conv, &last.text).await?,
        };
        let mut reply = match (pending, plugin_reply) {
            (Some(pending), _) => self.collector_turn(&conv, &pending, &last.text).await?,
            (None, Some(reply)) => reply,
            (None, None) => {
                let drafts = self.inner.drafts.clone();
                let id = conversation_id.to_owned();
                let draft = move |text: &str| {
                    // Nobody listening is fine: a draft is only a preview.
                    let _ = drafts.send(Draft {
                        conversation_id: id.clone(),
                        text: text.to_owned(),
                    });
                };
                self.inner
                    .bot
                    .reply(BotTurn {
                        bot_id: &conv.bot_id,
                        conversation: &conv,
                        history: &history,
                        text: &last.text,
                        settings: &settings,
                        draft: &draft,
                        tools: &self.plugin_tools(),
                    })
                    .await
            }
        };
        // The model chose a power-up: run it now, after what the model said.
        if let Some(call) = reply.power_up.take()
            && let Some(step) = self
                .power_up_step(&conv, &call.plugin, &call.arguments, &last.text, 0)
                .await?
        {
            reply.messages.extend(step.messages);
            reply.escalate = step.escalate;
            reply.department = step.department;
        }
        // The bot wants a human: first the contact's details, where configured.
        if let Some(reason) = reply.escalate.clone()
            && !from_collector
            && settings.handover.enabled
            && self
                .start_collecting(
                    conversation_id,
                    &reason,
                    reply.topic.clone(),
                    reply.messages.clone(),
                )
                .await?
        {
            return Ok(());
        }
        let spoke = self
            .store_bot_messages(conversation_id, &conv.bot_id, reply.messages)
            .await?;
        if let Some(reason) = reply.escalate
            && spoke
        {
            // This hand-over's topic, or none: an older one must not route it.
            self.inner
                .store
                .set_topic(conversation_id, reply.topic.as_deref())
                .await?;
            match self
                .escalate(conversation_id, reason, None, reply.department)
                .await
            {
                Ok(_) | Err(Error::Transition(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Stores the bot's messages if it may still speak, checked under the
    /// conversation's row lock: a claim that committed while the bot was
    /// thinking wins, and the reply is dropped. Returns whether it spoke.
    async fn store_bot_messages(
        &self,
        conversation_id: &str,
        bot_id: &str,
        messages: Vec<BotMessage>,
    ) -> Result<bool> {
        let now = self.now();
        let mut tx = self.inner.store.begin().await?;
        let Some(locked) = tx.lock_conversation(conversation_id).await? else {
            return Err(Error::NotFound("conversation"));
        };
        if !bot_may_speak(&locked.state, now) {
            tx.rollback().await?;
            debug!(%conversation_id, status = %locked.state.status, "bot reply dropped: a human holds the conversation");
            return Ok(false);
        }
        if messages.is_empty() {
            tx.rollback().await?;
            return Ok(true);
        }
        let mut done = Committed::default();
        let mut stored = vec![];
        for m in messages {
            let new = self.bot_message(bot_id, m.text, m.actions);
            stored.push(tx.append_message(conversation_id, &new, now).await?);
        }
        let snapshot = self
            .finish(&mut tx, &locked, &[], stored, &mut done, now)
            .await?;
        tx.commit().await?;
        self.after_commit(&snapshot, done);
        Ok(true)
    }

    /// Sends a message as the conversation's bot, if the bot may speak now.
    pub(crate) async fn send_as_bot(&self, conv: &Conversation, text: String) -> Result<bool> {
        self.store_bot_messages(
            &conv.id,
            &conv.bot_id,
            vec![BotMessage {
                text,
                actions: vec![],
            }],
        )
        .await
    }

    /// Appends a system message (a closing message, a notice) in its own transaction.
    pub(crate) async fn system_message(
        &self,
        conversation_id: &str,
        text: String,
    ) -> Result<Message> {
        self.append_now(conversation_id, NewMessage::text(SenderKind::System, text))
            .await
    }

    /// Appends one message outside any transition, in its own transaction.
    pub(crate) async fn append_now(
        &self,
        conversation_id: &str,
        new: NewMessage,
    ) -> Result<Message> {
        let now = self.now();
        let mut tx = self.inner.store.begin().await?;
        let Some(locked) = tx.lock_conversation(conversation_id).await? else {
            return Err(Error::NotFound("conversation"));
        };
        let message = tx.append_message(conversation_id, &new, now).await?;
        let mut done = Committed::default();
        let snapshot = self
            .finish_appended(&mut tx, &locked, &[], vec![message.clone()], &mut done, now)
            .await?;
        tx.commit().await?;
        self.after_commit(&snapshot, done);
        Ok(message)
    }

    /// Keeps the bot silent until `until` (never shortens a running pause).
    pub(crate) async fn pause_bot_until(
        &self,
        conversation_id: &str,
        until: Timestamp,
    ) -> Result<()> {
        for _ in 0..MAX_CAS_RETRIES {
            let conv = self.conversation(conversation_id).await?;
            if conv.state.bot_paused_until.is_some_and(|t| t >= until) {
                return Ok(());
            }
            let mut next = conv.state.clone();
            next.bot_paused_until = Some(until);
            let mut tx = self.inner.store.begin().await?;
            if !tx
                .cas_state(&conv.id, conv.version, &next, self.now())
                .await?
            {
                tx.rollback().await?;
                continue;
            }
            tx.commit().await?;
            return Ok(());
        }
        Err(Error::Conflict(
            "the conversation is too busy; try again".into(),
        ))
    }

    fn bot_message(
        &self,
        bot_id: &str,
        text: String,
        actions: Vec<baton_model::Action>,
    ) -> NewMessage {
        NewMessage {
            author: Some(AgentRef {
                id: format!("bot:{bot_id}"),
                name: self.bot_config(bot_id).name.clone(),
            }),
            actions,
            ..NewMessage::text(SenderKind::Bot, text)
        }
    }

    // ----- staff ----------------------------------------------------------

    /// Hands a conversation to a human. Without a reason, the reason is `manual`.
    pub async fn escalate(
        &self,
        conversation_id: &str,
        reason: Reason,
        by: Option<&AgentRef>,
        department: Option<String>,
    ) -> Result<Conversation> {
        let before = self.conversation(conversation_id).await?;
        let topic = self.inner.store.topic(conversation_id).await?;
        let department = department.or_else(|| self.route(&before.bot_id, topic.as_deref()));
        if let Some(d) = &department
            && self.config().department(d).is_none()
        {
            return Err(Error::Invalid(format!("unknown department `{d}`")));
        }
        let conv = self
            .apply(conversation_id, |conv| Input::Escalate {
                reason: reason.clone(),
                by: by.map(|a| a.id.clone()),
                department: department.clone(),
                pause_bot_for_ms: self.pause_ms(conv),
            })
            .await?;
        if conv.state.escalated_at == before.state.escalated_at {
            return Ok(conv);
        }
        info!(%conversation_id, reason = %reason, "conversation escalated");
        // A pending contact collector or power-up is moot once a human is on the way.
        self.inner
            .store
            .set_collecting(conversation_id, None)
            .await?;
        self.inner
            .store
            .set_power_up_session(conversation_id, None, self.now())
            .await?;
        // Routing first, then the bot's post-hand-over actions, in order.
        let rt = self.clone();
        let id = conversation_id.to_owned();
        tokio::spawn(async move {
            if rt.auto_assignment() {
                rt.assign_waiting().await;
            }
            rt.run_actions(&id).await;
        });
        Ok(conv)
    }

    /// A staff member's presence changed: an online agent may take queued conversations.
    pub fn presence_changed(&self) {
        if self.auto_assignment() {
            let rt = self.clone();
            tokio::spawn(async move { rt.assign_waiting().await });
        }
    }

    /// A staff member was removed: the conversations they held go back to
    /// the queue (visitors are not left with nobody), and assignment runs.
    pub async fn user_removed(&self, agent: &AgentRef) {
        let held = self
            .inner
            .store
            .list_conversations(&baton_store::ConversationFilter {
                status: Some(baton_model::Status::Active),
                assignee: baton_store::AssigneeFilter::User(agent.id.clone()),
                limit: 10_000,
                ..Default::default()
            })
            .await;
        match held {
            Ok(held) => {
                for conv in held {
                    let by = agent.clone();
                    if let Err(e) = self
                        .apply(&conv.id, |_| Input::Unclaim { by: by.clone() })
                        .await
                    {
                        warn!(conversation_id = %conv.id, error = %e, "cannot requeue a removed user's conversation");
                    }
                }
            }
            Err(e) => {
                warn!(user_id = %agent.id, error = %e, "cannot list a removed user's conversations")
            }
        }
        self.presence_changed();
    }

    pub async fn claim(&self, conversation_id: &str, agent: &AgentRef) -> Result<Conversation> {
        self.apply(conversation_id, |conv| Input::Claim {
            agent: agent.clone(),
            pause_bot_for_ms: self.pause_ms(conv),
        })
        .await
    }

    fn pause_ms(&self, conv: &Conversation) -> i64 {
        let pause = self.bot_config(&conv.bot_id).handover.pause_bot_for;
        i64::try_from(pause.as_millis()).unwrap_or(i64::MAX)
    }

    /// A staff member writes: to the visitor (claiming first where needed) or an internal note.
    pub async fn agent_message(
        &self,
        conversation_id: &str,
        agent: &AgentRef,
        text: String,
        internal: bool,
    ) -> Result<Message> {
        self.agent_message_once(conversation_id, agent, text, internal, None)
            .await
    }

    /// [`Runtime::agent_message`], stored once per `client_id` (a console's
    /// redelivered reply returns the earlier copy).
    pub async fn agent_message_once(
        &self,
        conversation_id: &str,
        agent: &AgentRef,
        text: String,
        internal: bool,
        client_id: Option<String>,
    ) -> Result<Message> {
        let limit = self.inner.config.limits.max_message_bytes;
        if text.len() > limit {
            return Err(Error::TooLarge { limit });
        }
        if text.trim().is_empty() {
            return Err(Error::Invalid("message text must not be empty".into()));
        }
        let new = NewMessage {
            author: Some(agent.clone()),
            internal,
            client_id,
            ..NewMessage::text(SenderKind::Agent, text)
        };
        for _ in 0..MAX_CAS_RETRIES {
            let conv = self.conversation(conversation_id).await?;
            let now = self.now();
            let mut tx = self.inner.store.begin().await?;
            if let Some(existing) = tx
                .find_duplicate(&conv.id, new.client_id.as_deref(), None)
                .await?
            {
                tx.rollback().await?;
                return Ok(existing);
            }
            let (next, effects) = if internal {
                // A note changes nothing about who holds the conversation.
                tx.lock_conversation(conversation_id).await?;
                (conv.state.clone(), vec![])
            } else {
                step(
                    &conv.state,
                    Input::AgentMessage {
                        agent: agent.clone(),
                        pause_bot_for_ms: self.pause_ms(&conv),
                    },
                    now,
                )?
            };
            if next != conv.state && !tx.cas_state(&conv.id, conv.version, &next, now).await? {
                continue;
            }
            let mut done = Committed::default();
            // Notices ("Alice joined") go before the reply itself.
            let notices = self.append_notices(&mut tx, &conv, &effects, now).await?;
            let message = tx.append_message(&conv.id, &new, now).await?;
            let mut messages = notices;
            messages.push(message.clone());
            let snapshot = self
                .finish_appended(&mut tx, &conv, &effects, messages, &mut done, now)
                .await?;
            tx.commit().await?;
            self.after_commit(&snapshot, done);
            return Ok(message);
        }
        Err(Error::Conflict(
            "the conversation is too busy; try again".into(),
        ))
    }

    /// Applies one hand-over input, built from the current conversation, with
    /// its effects, atomically. Retries when another writer got in first.
    pub async fn apply(
        &self,
        conversation_id: &str,
        input: impl Fn(&Conversation) -> Input,
    ) -> Result<Conversation> {
        for _ in 0..MAX_CAS_RETRIES {
            let conv = self.conversation(conversation_id).await?;
            let now = self.now();
            let (next, effects) = step(&conv.state, input(&conv), now)?;
            if effects.is_empty() && next == conv.state {
                return Ok(conv);
            }
            let mut tx = self.inner.store.begin().await?;
            if !tx.cas_state(&conv.id, conv.version, &next, now).await? {
                tx.rollback().await?;
                continue;
            }
            let mut done = Committed::default();
            let snapshot = self
                .finish(&mut tx, &conv, &effects, vec![], &mut done, now)
                .await?;
            tx.commit().await?;
            self.after_commit(&snapshot, done);
            let frees_a_seat = effects.iter().any(|e| {
                matches!(
                    e,
                    Effect::Emit(
                        EventKind::Released
                            | EventKind::Resolved
                            | EventKind::Unclaimed
                            | EventKind::Transferred
                            | EventKind::Abandoned
                    )
                )
            });
            if frees_a_seat {
                self.presence_changed();
            }
            return Ok(snapshot);
        }
        Err(Error::Conflict(
            "the conversation is too busy; try again".into(),
        ))
    }

    /// Appends the notices among `effects`, then records events (see [`Self::finish_appended`]).
    async fn finish(
        &self,
        tx: &mut Tx,
        conv: &Conversation,
        effects: &[Effect],
        messages: Vec<Message>,
        done: &mut Committed,
        now: Timestamp,
    ) -> Result<Conversation> {
        let mut all = self.append_notices(tx, conv, effects, now).await?;
        all.extend(messages);
        self.finish_appended(tx, conv, effects, all, done, now)
            .await
    }

    async fn append_notices(
        &self,
        tx: &mut Tx,
        conv: &Conversation,
        effects: &[Effect],
        now: Timestamp,
    ) -> Result<Vec<Message>> {
        let mut out = vec![];
        for effect in effects {
            if let Effect::Notify(notice) = effect {
                let bot = self.bot_config(&conv.bot_id);
                let paused = conv.state.bot_paused_until.is_some_and(|until| now < until);
                let text = match notice {
                    Notice::Escalated => self.escalation_notice(tx, &conv.id, &bot).await?,
                    // Inside the pause window the bot is not back: say who is.
                    Notice::AgentLeft { name } if paused => format!(
                        "{name} left the conversation. Write here and someone from the team \
                         will pick it up."
                    ),
                    _ => notice_text(&bot, notice),
                };
                out.push(
                    tx.append_message(&conv.id, &NewMessage::text(SenderKind::System, text), now)
                        .await?,
                );
            }
        }
        Ok(out)
    }

    /// What the visitor is told at a hand-over: someone is coming, their place
    /// in the queue when everyone is busy, or the offline message when nobody
    /// is there (closed, or nobody online in the department).
    async fn escalation_notice(&self, tx: &mut Tx, id: &str, bot: &BotConfig) -> Result<String> {
        use baton_model::routing::Availability;
        let current = self.snapshot(tx, id).await?;
        Ok(
            match self
                .availability(current.state.department.as_deref())
                .await?
            {
                Availability::Available => bot.handover.online_message.clone(),
                Availability::Busy => {
                    let position = tx.queue_position(id).await?.unwrap_or(1);
                    bot.handover
                        .queue_message
                        .replace("{position}", &position.to_string())
                }
                Availability::Offline => bot.handover.offline_message.clone(),
            },
        )
    }

    /// Records the transition's event and one `message.created` per message,
    /// all carrying the conversation as it is at the end of the transaction.
    async fn finish_appended(
        &self,
        tx: &mut Tx,
        conv: &Conversation,
        effects: &[Effect],
        messages: Vec<Message>,
        done: &mut Committed,
        now: Timestamp,
    ) -> Result<Conversation> {
        let snapshot = self.snapshot(tx, &conv.id).await?;
        for effect in effects {
            if let Effect::Emit(kind) = effect {
                done.events
                    .push(insert_event(tx, *kind, &snapshot, None, now).await?);
            }
        }
        for m in &messages {
            done.events
                .push(insert_event(tx, EventKind::MessageCreated, &snapshot, Some(m), now).await?);
        }
        done.outbound.extend(messages);
        Ok(snapshot)
    }

    async fn snapshot(&self, tx: &mut Tx, id: &str) -> Result<Conversation> {
        tx.conversation(id)
            .await?
            .ok_or(Error::NotFound("conversation"))
    }

    /// After a commit: publish the events, wake the webhook dispatcher, and hand
    /// outbound messages to the conversation's channel.
    fn after_commit(&self, conv: &Conversation, done: Committed) {
        let had_events = !done.events.is_empty();
        self.inner.bus.committed(done.events);
        if had_events {
            self.inner.webhook_wake.notify_one();
        }
        let outbound: Vec<Message> = done
            .outbound
            .into_iter()
            .filter(|m| !m.internal && m.sender != SenderKind::Visitor)
            .collect();
        if outbound.is_empty() {
            return;
        }
        if let Some(email) = self.email_copy(conv) {
            let copies: Vec<Message> = outbound
                .iter()
                .filter(|m| m.sender != SenderKind::System)
                .cloned()
                .collect();
            self.deliver_later(email, conv, copies);
        }
        let Some(channel) = self.channel(conv.channel) else {
            return;
        };
        self.deliver_later(channel, conv, outbound);
    }

    /// A web visitor who left their address and went away gets the team's
    /// answers by email too (and their emailed reply comes back to the same
    /// conversation): the email channel, when it is on and the conversation
    /// is a left message with an address.
    fn email_copy(&self, conv: &Conversation) -> Option<Arc<dyn Channel>> {
        if !conv.is_left_message() {
            return None;
        }
        self.channel(ChannelKind::Email)
    }

    /// On chat platforms the "Talk to a human" button travels with the bot's
    /// messages (the widget draws its own): from the bot answer
    /// `request_button_after` on, while the bot holds the conversation.
    pub(crate) async fn with_human_button(
        &self,
        conv: &Conversation,
        message: &Message,
    ) -> Message {
        let bot = self.bot_config(&conv.bot_id);
        let wanted = conv.channel != ChannelKind::Web
            && message.sender == SenderKind::Bot
            && conv.state.status == Status::Bot
            && bot.handover.enabled
            && !message
                .actions
                .iter()
                .any(|a| a.kind == ActionKind::RequestHuman);
        if !wanted {
            return message.clone();
        }
        let earlier = self
            .inner
            .store
            .messages(&conv.id, 0, false, message.seq)
            .await
            .unwrap_or_default();
        let first_visitor = earlier
            .iter()
            .position(|m| m.sender == SenderKind::Visitor)
            .unwrap_or(earlier.len());
        let answers = earlier[first_visitor..]
            .iter()
            .filter(|m| m.sender == SenderKind::Bot && m.seq <= message.seq)
            .count();
        let mut message = message.clone();
        if answers >= bot.handover.request_button_after as usize {
            message.actions.push(baton_model::Action {
                id: "request_human".into(),
                label: "Talk to a human".into(),
                kind: ActionKind::RequestHuman,
                url: None,
            });
        }
        message
    }

    // ----- reads ----------------------------------------------------------

    pub async fn conversation(&self, id: &str) -> Result<Conversation> {
        self.inner
            .store
            .conversation(id)
            .await?
            .ok_or(Error::NotFound("conversation"))
    }

    /// 1-based position in its department's queue, for a `waiting` conversation.
    pub async fn queue_position(&self, conv: &ConversationView) -> Result<Option<usize>> {
        if conv.status != Status::Waiting {
            return Ok(None);
        }
        let queue = self.inner.store.queue(conv.department.as_deref()).await?;
        Ok(queue
            .iter()
            .position(|(id, _)| *id == conv.id)
            .map(|i| i + 1))
    }

    /// Whether staff without monitoring see this conversation (DESIGN.md, monitoring mode).
    pub fn visible_to_staff(&self, conv: &ConversationView) -> bool {
        conv.status != Status::Bot || self.bot_config(&conv.bot).handover.monitoring
    }
}

/// Which contact details the collector need not ask for.
fn known_details(conv: &Conversation) -> baton_bot::Known {
    baton_bot::Known {
        email: conv.contact.email.is_some(),
        name: conv.contact.name.is_some(),
        phone: conv.contact.phone.is_some(),
    }
}

async fn insert_event(
    tx: &mut Tx,
    kind: EventKind,
    conv: &Conversation,
    message: Option<&Message>,
    now: Timestamp,
) -> Result<StoredEvent> {
    let envelope = EventEnvelope {
        id: baton_store::new_event_id(),
        kind,
        created_at: now,
        data: EventData {
            conversation: ConversationView::from(conv),
            message: message.map(MessageView::from),
        },
    };
    Ok(tx.insert_event(&envelope).await?)
}

/// The system message a visitor sees for a notice.
pub fn notice_text(bot: &BotConfig, notice: &Notice) -> String {
    match notice {
        Notice::Escalated => bot.handover.online_message.clone(),
        Notice::AgentJoined { name } => format!("{name} joined the conversation"),
        Notice::AgentLeft { name } => {
            format!(
                "{name} left the conversation. {} is back to help.",
                bot.name
            )
        }
        Notice::TransferredTo { name } => format!("You are now talking with {name}"),
        Notice::Requeued => {
            "You are back in the queue; the next available person will be with you shortly."
                .to_owned()
        }
        Notice::Resolved => "This conversation was marked as resolved.".to_owned(),
    }
}
