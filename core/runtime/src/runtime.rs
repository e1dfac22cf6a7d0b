//! `Runtime`, the façade: what it holds and the background work it starts.
//! What it does lives beside it, by kind: `unit` (the one way a
//! conversation changes), `visitor` (what visitors do), `staff` (what staff
//! do), `turn` (the bot's turn, as ordered stages), `fanout` (what follows a
//! commit), `supervisor` (the tasks it spawns).

use crate::bot::Bot;
use crate::bus::EventBus;
use crate::config::{BotConfig, Config};
use crate::supervisor::Supervisor;
use crate::webhooks::Dispatcher;
use crate::{Clock, DEFAULT_BOT, Error, Result};
use baton_channel::Channel;
use baton_model::{ChannelKind, Input, Timestamp};
use baton_store::{Backend, NewContact, Store};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{info, warn};

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

/// A node that has not beaten its heartbeat for this long is taken for dead:
/// the deliveries it leased and the bot turns it ran are taken over by the
/// others (or by itself, restarted). It beats every [`NODE_HEARTBEAT`].
pub const NODE_TIMEOUT: Duration = Duration::from_secs(10);
pub const NODE_HEARTBEAT: Duration = Duration::from_secs(2);

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
    /// Shared with the store's delivery routing (see [`crate::delivery::routes`]).
    channels: crate::delivery::Channels,
    /// This process's id among the nodes (see [`NODE_TIMEOUT`]).
    node_id: String,
    /// Bumped by each bot-settings save, so a reread that raced it is dropped.
    settings_generation: std::sync::atomic::AtomicU64,
    webhook_wake: Arc<Notify>,
    /// One automatic-assignment run at a time on this node.
    assign_lock: tokio::sync::Mutex<()>,
    /// For plugins' host calls (their manifests allow-list the hosts).
    http: reqwest::Client,
    /// For URLs entered through the API: webhooks and `webhook` actions.
    /// It refuses internal addresses unless the operator allows them.
    webhook_http: Option<reqwest::Client>,
    /// The WebAssembly plugin host, once installed.
    plugins: std::sync::OnceLock<Arc<baton_plugins::PluginHost>>,
    /// Wakes the plugin-action queue.
    plugin_wake: Arc<Notify>,
    /// The delivery outbox dispatcher's wake-up.
    deliveries: crate::delivery::Deliveries,
    /// Turns true when the node stops; background work that holds leases watches it.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Every task the runtime spawns: the stop waits for those that hold
    /// leases and cuts the rest.
    tasks: Supervisor,
    /// The store's announcements, until the fan-out task takes them.
    announcements:
        std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<baton_store::Announcement>>>,
}

fn outbound_policy(config: &Config) -> crate::outbound::OutboundPolicy {
    crate::outbound::OutboundPolicy {
        allow_private: config.security.allow_private_webhooks,
    }
}

impl Runtime {
    pub fn new(store: Store, config: Config, bot: Arc<dyn Bot>) -> Self {
        Self::with_clock(store, config, bot, Clock::system())
    }

    pub fn with_clock(store: Store, config: Config, bot: Arc<dyn Bot>, clock: Clock) -> Self {
        let bus = EventBus::new();
        let (announce, announcements) = tokio::sync::mpsc::unbounded_channel();
        store.announce_to(move |a| {
            let _ = announce.send(a);
        });
        let mut bots: BTreeMap<String, Arc<BotConfig>> = config
            .bots
            .iter()
            .map(|(id, bot)| (id.clone(), Arc::new(bot.clone())))
            .collect();
        bots.insert(DEFAULT_BOT.to_owned(), Arc::new(config.bot.clone()));
        let channels: crate::delivery::Channels = Arc::default();
        store.route_deliveries(crate::delivery::routes(channels.clone()));
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
                channels,
                node_id: format!("node-{}", baton_store::new_id()),
                settings_generation: Default::default(),
                webhook_wake: Arc::new(Notify::new()),
                assign_lock: tokio::sync::Mutex::new(()),
                http: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default(),
                webhook_http,
                plugins: std::sync::OnceLock::new(),
                plugin_wake: Arc::new(Notify::new()),
                deliveries: Default::default(),
                stopping: tokio::sync::watch::channel(false).0,
                tasks: Supervisor::default(),
                announcements: std::sync::Mutex::new(Some(announcements)),
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

    /// Bumped by every bot-settings save on this node (see `settings.rs`).
    pub(crate) fn settings_generation(&self) -> u64 {
        self.inner
            .settings_generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn settings_changed(&self) {
        self.inner
            .settings_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// This process's id among the nodes sharing the database.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The oldest heartbeat of a node still counted alive.
    pub(crate) fn alive_since(&self) -> Timestamp {
        self.now().plus_millis(-(NODE_TIMEOUT.as_millis() as i64))
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

    /// Turns true when this node stops.
    pub(crate) fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }

    /// The tasks this runtime spawns.
    pub(crate) fn tasks(&self) -> &Supervisor {
        &self.inner.tasks
    }

    pub(crate) fn webhook_wake(&self) -> &Notify {
        &self.inner.webhook_wake
    }

    /// Whether any queue is assigned automatically (else nothing to do on a freed seat).
    pub(crate) fn auto_assignment(&self) -> bool {
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
        self.inner.tasks.shutdown(Duration::from_secs(5)).await;
        // What this node ran is handed back above; it is gone.
        if let Err(e) = self.inner.store.forget_node(&self.inner.node_id).await {
            warn!(error = %e, "stopping: cannot remove this node from the node list");
        }
    }

    /// Starts the background work: webhook delivery, the cross-node event
    /// listener, the abandonment sweep and each channel's receive loop.
    ///
    /// On PostgreSQL the listener's starting point is read here, before the
    /// node serves anything: every event committed from now on reaches this
    /// node's subscribers, however late the listener task first runs.
    pub async fn start_background(&self) -> Result<()> {
        // This node is alive before it takes any work (and, on SQLite, an
        // earlier process's leases are free at once).
        let store = &self.inner.store;
        store.heartbeat(&self.inner.node_id, self.now()).await?;
        store.forget_earlier_nodes(&self.inner.node_id).await?;
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
            node_id: self.inner.node_id.clone(),
        };
        let tasks = &self.inner.tasks;
        let announcements = self
            .inner
            .announcements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(rx) = announcements {
            tasks.spawn(self.clone().fan_out(rx));
        }
        // These hold leases: the stop waits for them to hand their work back.
        tasks.spawn_held(dispatcher.run(self.inner.stopping.subscribe()));
        tasks.spawn_held(self.clone().plugin_jobs(self.inner.stopping.subscribe()));
        tasks.spawn_held(self.clone().deliver_outbox(self.inner.stopping.subscribe()));
        let rt = self.clone();
        tasks.spawn(async move { rt.beat().await });
        tasks.spawn(self.clone().recover_turns());
        tasks.spawn(self.clone().follow_bot_settings());
        if let Some(from) = events_from {
            tasks.spawn(self.clone().listen_postgres(from));
        }
        if self.auto_assignment() {
            // Hours open and agents come back without an event to say so.
            let rt = self.clone();
            tasks.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(15)).await;
                    rt.assign_waiting().await;
                }
            });
        }
        let abandon_after = self.inner.config.conversations.abandon_after;
        if !abandon_after.is_zero() {
            let rt = self.clone();
            tasks.spawn(async move { rt.sweep_abandoned(abandon_after).await });
        }
        self.start_channels();
        Ok(())
    }

    /// Says every [`NODE_HEARTBEAT`] that this node is alive.
    async fn beat(&self) {
        let mut tick = tokio::time::interval(NODE_HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self
                .inner
                .store
                .heartbeat(&self.inner.node_id, self.now())
                .await
            {
                warn!(error = %e, "cannot beat this node's heartbeat");
            }
        }
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
}
