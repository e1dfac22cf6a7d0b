//! The plugin host: one wasmtime engine, one linker, and a slot per plugin
//! folder. Components are compiled once (or loaded from the disk cache) and
//! pre-instantiated; every call gets a fresh store with its own limits.

use crate::api::{ConversationInfo, Escalation, HostApi};
use crate::bindings::{action, power_up, trigger};
use crate::cache;
use crate::imports::{CallState, wit_conversation};
use crate::manifest::{Manifest, World, config_string};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// How much of a call's stderr is kept for its error report.
const STDERR_KEPT: usize = 4096;

/// How often the epoch advances: the resolution of every deadline.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The operator's `[plugins]` table: maximums over what manifests ask for.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSettings {
    /// No plugin call may run longer than this, whatever its manifest says.
    pub max_deadline_ms: u64,
    /// Memory of a plugin whose manifest does not ask for an amount.
    pub default_memory_mb: u64,
    /// No plugin may use more memory than this.
    pub max_memory_mb: u64,
    /// A plugin failing this many calls in a row is switched off.
    pub switch_off_after: u32,
    /// An action is tried this many times before it is given up.
    pub action_attempts: u32,
    /// How often the folder is looked at for new, changed or removed plugins.
    pub reload_interval_ms: u64,
    /// How many plugin calls may run at once (instances in the pool).
    pub max_concurrent_calls: u32,
    /// `[plugins.config.<id>]`: values over the manifest's `[config]` defaults.
    pub config: BTreeMap<String, BTreeMap<String, toml::Value>>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            max_deadline_ms: 60_000,
            default_memory_mb: 64,
            max_memory_mb: 512,
            switch_off_after: 5,
            action_attempts: 5,
            reload_interval_ms: 1_000,
            max_concurrent_calls: 64,
            config: BTreeMap::new(),
        }
    }
}

impl PluginSettings {
    pub fn check(&self) -> Result<(), String> {
        if self.max_deadline_ms == 0 || self.max_memory_mb == 0 || self.default_memory_mb == 0 {
            return Err("[plugins] limits must be above 0".into());
        }
        if self.max_memory_mb > 4096 {
            return Err("[plugins] max_memory_mb is at most 4096".into());
        }
        if self.switch_off_after == 0 || self.action_attempts == 0 {
            return Err("[plugins] switch_off_after and action_attempts must be above 0".into());
        }
        if !(1..=10_000).contains(&self.max_concurrent_calls) {
            return Err("[plugins] max_concurrent_calls is 1 to 10000".into());
        }
        Ok(())
    }
}

/// The limits a plugin's calls run under: its manifest's, capped.
#[derive(Clone, Debug, Serialize)]
pub struct EffectiveLimits {
    pub deadline_ms: u64,
    pub memory_mb: u64,
    pub fuel: Option<u64>,
}

/// A power-up's description, from its `describe()`; an LLM tool definition.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Descriptor {
    pub name: String,
    pub description: String,
    /// A JSON schema (an object).
    pub parameters: serde_json::Value,
}

/// A usable power-up.
#[derive(Clone, Debug, Serialize)]
pub struct PowerUp {
    pub id: String,
    pub descriptor: Descriptor,
    pub phrases: Vec<String>,
}

/// What a power-up says to do next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "step", content = "value", rename_all = "snake_case")]
pub enum Step {
    Reply(String),
    Ask(String),
    Done(Option<String>),
    Escalate(Escalation),
}

/// How an action went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Done(String),
    Retry(String),
    Failed(String),
}

/// Why a call did not give an answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("no plugin `{0}`")]
    NotFound(String),
    #[error("plugin `{0}` is not a {1}")]
    WrongWorld(String, World),
    #[error("plugin `{0}` is off")]
    Off(String),
    #[error("plugin `{id}` {kind}: {message}")]
    Failed {
        id: String,
        kind: FailureKind,
        message: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Timeout,
    OutOfFuel,
    Memory,
    Trap,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::Timeout => "timed out",
            FailureKind::OutOfFuel => "ran out of fuel",
            FailureKind::Memory => "hit its memory limit",
            FailureKind::Trap => "trapped",
        })
    }
}

/// Calls, failures and the last error of one plugin since it was loaded.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub calls: u64,
    pub failures: u64,
    pub timeouts: u64,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub last_error_at: Option<i64>,
    /// Why it was switched off automatically, while it is.
    pub switched_off: Option<String>,
    /// Wall time of all calls, for the mean.
    pub total_micros: u64,
}

/// One plugin as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PluginStatus {
    pub id: String,
    pub folder: String,
    pub version: Option<String>,
    pub world: Option<World>,
    pub description: String,
    /// `on`, `off` (by an admin), `switched_off` (by Baton, after failures) or `error` (did not load).
    pub state: &'static str,
    pub error: Option<String>,
    pub capabilities: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub imports: Vec<String>,
    pub limits: Option<EffectiveLimits>,
    pub phrases: Vec<String>,
    pub tool: Option<Descriptor>,
    pub sha256: Option<String>,
    pub stats: Stats,
    pub mean_call_micros: Option<u64>,
}

enum Pre {
    Trigger(trigger::TriggerPre<CallState>),
    PowerUp(power_up::PowerUpPre<CallState>),
    Action(action::ActionPre<CallState>),
}

struct Loaded {
    manifest: Arc<Manifest>,
    pre: Pre,
    config: Arc<BTreeMap<String, String>>,
    limits: EffectiveLimits,
    imports: Vec<String>,
    descriptor: Option<Descriptor>,
    sha256: String,
}

struct Slot {
    folder: String,
    fingerprint: String,
    /// The manifest id, or the folder's name when the manifest is unreadable.
    id: String,
    manifest: Option<Arc<Manifest>>,
    loaded: Option<Arc<Loaded>>,
    error: Option<String>,
    stats: Mutex<Stats>,
}

/// The host. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<CallState>,
    dir: PathBuf,
    cache_dir: Option<PathBuf>,
    settings: PluginSettings,
    slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    /// Plugins an admin switched off (persisted by the caller).
    off: RwLock<HashSet<String>>,
    scan_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// An engine for `dir`, with compiled components cached in `cache_dir`.
    /// Nothing is loaded until [`PluginHost::rescan`].
    pub fn new(
        dir: PathBuf,
        cache_dir: Option<PathBuf>,
        settings: PluginSettings,
    ) -> anyhow::Result<Self> {
        settings.check().map_err(anyhow::Error::msg)?;
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(true);
        let mut pool = PoolingAllocationConfig::default();
        let calls = settings.max_concurrent_calls;
        pool.total_component_instances(calls)
            .total_core_instances(calls * 16)
            .total_memories(calls * 2)
            .total_tables(calls * 16)
            .total_stacks(calls)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(32)
            .max_memory_size((settings.max_memory_mb as usize) << 20)
            .table_elements(100_000)
            .max_core_instance_size(4 << 20)
            .max_component_instance_size(4 << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        trigger::Trigger::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("baton-plugin-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(Self {
            engine,
            linker,
            dir,
            cache_dir,
            settings,
            slots: RwLock::new(BTreeMap::new()),
            off: RwLock::new(HashSet::new()),
            scan_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    /// Marks the plugins an admin switched off earlier (from the database).
    pub fn set_off(&self, ids: impl IntoIterator<Item = String>) {
        *self.off.write().unwrap() = ids.into_iter().collect();
    }

    /// Switches a plugin on or off. Switching on also clears an automatic
    /// switch-off. Errors when no plugin has this id.
    pub fn switch(&self, id: &str, on: bool) -> Result<(), CallError> {
        let slot = self
            .slot(id)
            .ok_or_else(|| CallError::NotFound(id.into()))?;
        if on {
            self.off.write().unwrap().remove(id);
            let mut stats = slot.stats.lock().unwrap();
            stats.switched_off = None;
            stats.consecutive_failures = 0;
        } else {
            self.off.write().unwrap().insert(id.to_owned());
            // Off by the admin's hand now, whatever Baton had decided.
            slot.stats.lock().unwrap().switched_off = None;
        }
        info!(plugin = id, on, "plugin switched");
        Ok(())
    }

    /// Loads new and changed plugin folders and forgets removed ones.
    /// Calls in flight finish on the version they started with.
    pub async fn rescan(&self) {
        let _one_at_a_time = self.scan_lock.lock().await;
        let folders = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join("plugin.toml").is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect::<Vec<_>>(),
            Err(_) => vec![],
        };
        let before: BTreeMap<String, Arc<Slot>> = self.slots.read().unwrap().clone();
        let mut after = BTreeMap::new();
        for folder in folders {
            let path = self.dir.join(&folder);
            let fingerprint = fingerprint(&path);
            if let Some(old) = before.get(&folder)
                && old.fingerprint == fingerprint
            {
                after.insert(folder, old.clone());
                continue;
            }
            let slot = self.load_slot(&folder, &path, fingerprint).await;
            match (&slot.error, before.contains_key(&folder)) {
                (Some(e), _) => warn!(folder, "plugin not loaded: {e}"),
                (None, true) => info!(plugin = %slot.id, "plugin reloaded"),
                (None, false) => info!(plugin = %slot.id, "plugin loaded"),
            }
            after.insert(folder, Arc::new(slot));
        }
        for (folder, slot) in &before {
            if !after.contains_key(folder) {
                info!(plugin = %slot.id, "plugin removed");
            }
        }
        // Two folders claiming one id: the first (by folder name) keeps it.
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (folder, slot) in after.iter_mut() {
            if slot.loaded.is_none() {
                continue;
            }
            if let Some(first) = seen.get(&slot.id) {
                let error = format!("id `{}` is already used by folder `{first}`", slot.id);
                warn!(folder, "plugin not loaded: {error}");
                *slot = Arc::new(Slot {
                    folder: folder.clone(),
                    fingerprint: slot.fingerprint.clone(),
                    id: folder.clone(),
                    manifest: slot.manifest.clone(),
                    loaded: None,
                    error: Some(error),
                    stats: Mutex::new(Stats::default()),
                });
            } else {
                seen.insert(slot.id.clone(), folder.clone());
            }
        }
        *self.slots.write().unwrap() = after;
    }

    /// Rescans every `reload_interval_ms`, for as long as the host lives.
    pub fn watch(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = Duration::from_millis(self.settings.reload_interval_ms.max(50));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(host) = weak.upgrade() else { return };
                host.rescan().await;
            }
        });
    }

    async fn load_slot(&self, folder: &str, path: &Path, fingerprint: String) -> Slot {
        let (id, manifest, result) = match Manifest::load(&path.join("plugin.toml")) {
            Err(e) => (folder.to_owned(), None, Err(e.to_string())),
            Ok(manifest) => {
                let manifest = Arc::new(manifest);
                let result = self.load(path, manifest.clone()).await;
                (manifest.id.clone(), Some(manifest), result)
            }
        };
        let (loaded, error) = match result {
            Ok(loaded) => (Some(Arc::new(loaded)), None),
            Err(e) => (None, Some(e)),
        };
        Slot {
            folder: folder.to_owned(),
            fingerprint,
            id,
            manifest,
            loaded,
            error,
            stats: Mutex::new(Stats::default()),
        }
    }

    /// Compiles (or loads from the cache), checks and pre-instantiates one plugin.
    async fn load(&self, folder: &Path, manifest: Arc<Manifest>) -> Result<Loaded, String> {
        let file = folder.join(&manifest.component);
        let bytes = std::fs::read(&file)
            .map_err(|e| format!("cannot read component {}: {e}", file.display()))?;
        let engine = self.engine.clone();
        let cache_dir = self.cache_dir.clone();
        let (component, sha256) = tokio::task::spawn_blocking(move || {
            cache::compile(&engine, cache_dir.as_deref(), &bytes)
        })
        .await
        .map_err(|e| format!("compiling failed: {e}"))??;
        let imports = check_component(&self.engine, &component, &manifest)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("cannot link the component: {e:#}"))?;
        let wrong = |e: wasmtime::Error| {
            format!(
                "the component does not fit the `{}` world: {e:#}",
                manifest.world
            )
        };
        let pre = match manifest.world {
            World::Trigger => Pre::Trigger(trigger::TriggerPre::new(instance_pre).map_err(wrong)?),
            World::PowerUp => Pre::PowerUp(power_up::PowerUpPre::new(instance_pre).map_err(wrong)?),
            World::Action => Pre::Action(action::ActionPre::new(instance_pre).map_err(wrong)?),
        };
        let limits = EffectiveLimits {
            deadline_ms: manifest
                .limits
                .deadline_ms
                .unwrap_or(manifest.world.default_deadline_ms())
                .min(self.settings.max_deadline_ms),
            memory_mb: manifest
                .limits
                .memory_mb
                .unwrap_or(self.settings.default_memory_mb)
                .min(self.settings.max_memory_mb),
            fuel: manifest.limits.fuel,
        };
        let mut config: BTreeMap<String, String> = manifest
            .config
            .iter()
            .map(|(k, v)| (k.clone(), config_string(v)))
            .collect();
        if let Some(overrides) = self.settings.config.get(&manifest.id) {
            for (k, v) in overrides {
                config.insert(k.clone(), config_string(v));
            }
        }
        let mut loaded = Loaded {
            manifest: manifest.clone(),
            pre,
            config: Arc::new(config),
            limits,
            imports,
            descriptor: None,
            sha256,
        };
        if let Pre::PowerUp(pre) = &loaded.pre {
            let stderr = MemoryOutputPipe::new(STDERR_KEPT);
            let mut store = self.store(&loaded, Arc::new(crate::testing::Inert), "", &stderr);
            let call = async {
                let instance = pre.instantiate_async(&mut store).await?;
                instance.call_describe(&mut store).await
            };
            let d = finish(&manifest.id, loaded.limits.deadline_ms, call, &stderr).await;
            let d = d.map_err(|e| format!("describe() failed: {e}"))?;
            loaded.descriptor = Some(check_descriptor(d)?);
        }
        Ok(loaded)
    }

    fn store(
        &self,
        loaded: &Loaded,
        api: Arc<dyn HostApi>,
        conversation_id: &str,
        stderr: &MemoryOutputPipe,
    ) -> Store<CallState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size((loaded.limits.memory_mb as usize) << 20)
            .trap_on_grow_failure(true)
            .build();
        let state = CallState {
            // No arguments, environment, files or network: a sandbox. Its
            // stderr (a panic message) is kept for the error report.
            wasi: WasiCtxBuilder::new().stderr(stderr.clone()).build(),
            table: wasmtime::component::ResourceTable::new(),
            limits,
            manifest: loaded.manifest.clone(),
            config: loaded.config.clone(),
            api,
            conversation_id: conversation_id.to_owned(),
            deadline: Instant::now() + Duration::from_millis(loaded.limits.deadline_ms),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(
            loaded
                .limits
                .deadline_ms
                .div_ceil(EPOCH_TICK.as_millis() as u64)
                + 1,
        );
        store.epoch_deadline_trap();
        // Fuel is always metered; without a budget it is effectively endless.
        let _ = store.set_fuel(loaded.limits.fuel.unwrap_or(u64::MAX));
        store
    }

    fn slot(&self, id: &str) -> Option<Arc<Slot>> {
        self.slots
            .read()
            .unwrap()
            .values()
            .find(|s| s.id == id && s.loaded.is_some())
            .cloned()
    }

    fn usable(&self, slot: &Slot) -> bool {
        slot.loaded.is_some()
            && !self.off.read().unwrap().contains(&slot.id)
            && slot.stats.lock().unwrap().switched_off.is_none()
    }

    /// The plugins of a world that are on, in id order.
    fn on(&self, world: World) -> Vec<(Arc<Slot>, Arc<Loaded>)> {
        let slots: Vec<Arc<Slot>> = self.slots.read().unwrap().values().cloned().collect();
        let mut on: Vec<_> = slots
            .into_iter()
            .filter(|s| self.usable(s))
            .filter_map(|s| {
                let loaded = s.loaded.clone()?;
                (loaded.manifest.world == world).then_some((s, loaded))
            })
            .collect();
        on.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        on
    }

    fn get(&self, id: &str, world: World) -> Result<(Arc<Slot>, Arc<Loaded>), CallError> {
        let slot = self
            .slot(id)
            .ok_or_else(|| CallError::NotFound(id.into()))?;
        let loaded = slot
            .loaded
            .clone()
            .ok_or_else(|| CallError::NotFound(id.into()))?;
        if loaded.manifest.world != world {
            return Err(CallError::WrongWorld(id.into(), world));
        }
        if !self.usable(&slot) {
            return Err(CallError::Off(id.into()));
        }
        Ok((slot, loaded))
    }

    /// Asks every trigger that is on about a visitor message, in id order;
    /// the first escalation wins. A failing trigger is skipped (fails open).
    pub async fn trigger(
        &self,
        api: Arc<dyn HostApi>,
        conversation: &ConversationInfo,
        text: &str,
    ) -> Option<(String, Escalation)> {
        for (slot, loaded) in self.on(World::Trigger) {
            let Pre::Trigger(pre) = &loaded.pre else {
                continue;
            };
            let event = trigger::Event {
                kind: "visitor-message".into(),
                conversation: wit_conversation(conversation.clone()),
                text: text.to_owned(),
            };
            let stderr = MemoryOutputPipe::new(STDERR_KEPT);
            let mut store = self.store(&loaded, api.clone(), &conversation.id, &stderr);
            let call = async {
                let instance = pre.instantiate_async(&mut store).await?;
                instance.call_on_event(&mut store, &event).await
            };
            let started = Instant::now();
            let result = finish(&slot.id, loaded.limits.deadline_ms, call, &stderr).await;
            self.record(&slot, started, &result);
            if let Ok(Some(e)) = result {
                return Some((
                    slot.id.clone(),
                    Escalation {
                        note: e.note,
                        priority: e.priority.min(3),
                        department: e.department,
                        tags: e.tags,
                    },
                ));
            }
        }
        None
    }

    /// Power-ups that are on, with their tool descriptions and phrases.
    pub fn power_ups(&self) -> Vec<PowerUp> {
        self.on(World::PowerUp)
            .into_iter()
            .filter_map(|(slot, loaded)| {
                Some(PowerUp {
                    id: slot.id.clone(),
                    descriptor: loaded.descriptor.clone()?,
                    phrases: loaded.manifest.phrases.clone(),
                })
            })
            .collect()
    }

    /// Calls a power-up's `invoke`.
    pub async fn invoke_power_up(
        &self,
        api: Arc<dyn HostApi>,
        id: &str,
        conversation: &ConversationInfo,
        arguments: &str,
        text: &str,
        turn: u32,
    ) -> Result<Step, CallError> {
        let (slot, loaded) = self.get(id, World::PowerUp)?;
        let Pre::PowerUp(pre) = &loaded.pre else {
            return Err(CallError::WrongWorld(id.into(), World::PowerUp));
        };
        let call_arg = power_up::Invocation {
            conversation: wit_conversation(conversation.clone()),
            arguments: arguments.to_owned(),
            text: text.to_owned(),
            turn,
        };
        let stderr = MemoryOutputPipe::new(STDERR_KEPT);
        let mut store = self.store(&loaded, api, &conversation.id, &stderr);
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.call_invoke(&mut store, &call_arg).await
        };
        let started = Instant::now();
        let result = finish(&slot.id, loaded.limits.deadline_ms, call, &stderr).await;
        self.record(&slot, started, &result);
        Ok(match result? {
            power_up::Step::Reply(t) => Step::Reply(t),
            power_up::Step::Ask(t) => Step::Ask(t),
            power_up::Step::Done(t) => Step::Done(t),
            power_up::Step::Escalate(e) => Step::Escalate(Escalation {
                note: e.note,
                priority: e.priority.min(3),
                department: e.department,
                tags: e.tags,
            }),
        })
    }

    /// Action plugins that are on, in id order.
    pub fn actions(&self) -> Vec<String> {
        self.on(World::Action)
            .into_iter()
            .map(|(s, _)| s.id.clone())
            .collect()
    }

    /// Calls an action's `run`.
    pub async fn run_action(
        &self,
        api: Arc<dyn HostApi>,
        id: &str,
        conversation: &ConversationInfo,
        idempotency_key: &str,
        reason: &str,
        attempt: u32,
    ) -> Result<Outcome, CallError> {
        let (slot, loaded) = self.get(id, World::Action)?;
        let Pre::Action(pre) = &loaded.pre else {
            return Err(CallError::WrongWorld(id.into(), World::Action));
        };
        let job = action::Job {
            idempotency_key: idempotency_key.to_owned(),
            conversation: wit_conversation(conversation.clone()),
            reason: reason.to_owned(),
            attempt,
        };
        let stderr = MemoryOutputPipe::new(STDERR_KEPT);
        let mut store = self.store(&loaded, api, &conversation.id, &stderr);
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.call_run(&mut store, &job).await
        };
        let started = Instant::now();
        let result = finish(&slot.id, loaded.limits.deadline_ms, call, &stderr).await;
        self.record(&slot, started, &result);
        Ok(match result? {
            action::Outcome::Done(d) => Outcome::Done(d),
            action::Outcome::Retry(d) => Outcome::Retry(d),
            action::Outcome::Failed(d) => Outcome::Failed(d),
        })
    }

    fn record<T>(&self, slot: &Slot, started: Instant, result: &Result<T, CallError>) {
        let mut stats = slot.stats.lock().unwrap();
        stats.calls += 1;
        stats.total_micros += started.elapsed().as_micros() as u64;
        match result {
            Ok(_) => stats.consecutive_failures = 0,
            Err(e) => {
                warn!(plugin = %slot.id, "plugin call failed: {e}");
                stats.failures += 1;
                stats.consecutive_failures += 1;
                if matches!(
                    e,
                    CallError::Failed {
                        kind: FailureKind::Timeout,
                        ..
                    }
                ) {
                    stats.timeouts += 1;
                }
                stats.last_error = Some(e.to_string());
                stats.last_error_at = Some(now_ms());
                if stats.consecutive_failures >= self.settings.switch_off_after
                    && stats.switched_off.is_none()
                {
                    let why = format!(
                        "switched off after {} failed calls in a row; last: {e}",
                        stats.consecutive_failures
                    );
                    warn!(plugin = %slot.id, "{why}");
                    stats.switched_off = Some(why);
                }
            }
        }
    }

    /// Every plugin folder, loaded or not, for the admin API.
    pub fn list(&self) -> Vec<PluginStatus> {
        let slots: Vec<Arc<Slot>> = self.slots.read().unwrap().values().cloned().collect();
        slots.iter().map(|s| self.status_of(s)).collect()
    }

    pub fn status(&self, id: &str) -> Option<PluginStatus> {
        let slots: Vec<Arc<Slot>> = self.slots.read().unwrap().values().cloned().collect();
        slots
            .iter()
            .find(|s| s.id == id && s.loaded.is_some())
            .or_else(|| slots.iter().find(|s| s.id == id))
            .map(|s| self.status_of(s))
    }

    fn status_of(&self, slot: &Slot) -> PluginStatus {
        let stats = slot.stats.lock().unwrap().clone();
        let state = if slot.loaded.is_none() {
            "error"
        } else if self.off.read().unwrap().contains(&slot.id) {
            "off"
        } else if stats.switched_off.is_some() {
            "switched_off"
        } else {
            "on"
        };
        let m = slot.manifest.as_deref();
        let loaded = slot.loaded.as_deref();
        PluginStatus {
            id: slot.id.clone(),
            folder: slot.folder.clone(),
            version: m.map(|m| m.version.clone()),
            world: m.map(|m| m.world),
            description: m.map(|m| m.description.clone()).unwrap_or_default(),
            state,
            error: slot.error.clone(),
            capabilities: m.map(|m| m.capabilities.clone()).unwrap_or_default(),
            allowed_hosts: m.map(|m| m.allowed_hosts.clone()).unwrap_or_default(),
            imports: loaded.map(|l| l.imports.clone()).unwrap_or_default(),
            limits: loaded.map(|l| l.limits.clone()),
            phrases: m.map(|m| m.phrases.clone()).unwrap_or_default(),
            tool: loaded.and_then(|l| l.descriptor.clone()),
            sha256: loaded.map(|l| l.sha256.clone()),
            mean_call_micros: (stats.calls > 0).then(|| stats.total_micros / stats.calls),
            stats,
        }
    }

    /// Loads one plugin folder on its own and reports what is wrong with it,
    /// for `baton plugin check`.
    pub async fn check_folder(&self, folder: &Path) -> Result<PluginStatus, String> {
        Ok(self.status_of(&self.lone_slot(folder).await?))
    }

    /// Installs one folder as the only plugin (for `baton plugin test`).
    pub async fn load_only(&self, folder: &Path) -> Result<String, String> {
        let slot = self.lone_slot(folder).await?;
        let id = slot.id.clone();
        self.slots
            .write()
            .unwrap()
            .insert(slot.folder.clone(), Arc::new(slot));
        Ok(id)
    }

    /// A slot for one folder outside the watched one; an error says why it did not load.
    async fn lone_slot(&self, folder: &Path) -> Result<Slot, String> {
        let manifest =
            Arc::new(Manifest::load(&folder.join("plugin.toml")).map_err(|e| e.to_string())?);
        let loaded = self.load(folder, manifest.clone()).await?;
        Ok(Slot {
            folder: folder.display().to_string(),
            fingerprint: String::new(),
            id: manifest.id.clone(),
            manifest: Some(manifest),
            loaded: Some(Arc::new(loaded)),
            error: None,
            stats: Mutex::new(Stats::default()),
        })
    }
}

/// Runs one call within its deadline (host calls included) and names what
/// went wrong: a time-out, running out of fuel, the memory cap, or a trap.
async fn finish<T>(
    id: &str,
    deadline_ms: u64,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
    stderr: &MemoryOutputPipe,
) -> Result<T, CallError> {
    let failed = |kind, message: String| CallError::Failed {
        id: id.to_owned(),
        kind,
        message,
    };
    match tokio::time::timeout(Duration::from_millis(deadline_ms), call).await {
        Err(_) => Err(failed(
            FailureKind::Timeout,
            format!("no answer within {deadline_ms} ms"),
        )),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            let message = format!("{e:#}");
            let kind = match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => FailureKind::Timeout,
                Some(Trap::OutOfFuel) => FailureKind::OutOfFuel,
                _ if message.contains("memory")
                    && (message.contains("grow") || message.contains("limit")) =>
                {
                    FailureKind::Memory
                }
                _ => FailureKind::Trap,
            };
            let message = match (kind, e.downcast_ref::<Trap>()) {
                (FailureKind::Timeout, _) => format!("no answer within {deadline_ms} ms"),
                (_, Some(trap)) => trap.to_string(),
                // The cause, not wasmtime's "error while executing at …" context.
                _ => e.root_cause().to_string(),
            };
            // What the plugin printed on stderr (a panic message) says why.
            let printed = String::from_utf8_lossy(&stderr.contents()).into_owned();
            let printed: Vec<&str> = printed
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("note:"))
                .collect();
            let message = if printed.is_empty() {
                message
            } else {
                format!("{message} ({})", printed.join(" "))
            };
            let message: String = message.chars().take(500).collect();
            Err(failed(kind, message))
        }
    }
}

/// Checks a component's imports against its manifest's grants, and its
/// exports against its world. Returns the imports, for the admin to see.
fn check_component(
    engine: &Engine,
    component: &Component,
    manifest: &Manifest,
) -> Result<Vec<String>, String> {
    let ty = component.component_type();
    let mut imports = vec![];
    for (name, _) in ty.imports(engine) {
        imports.push(name.to_owned());
        if let Some(rest) = name.strip_prefix("baton:plugin/") {
            let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
            if !version.starts_with("0.1.") {
                return Err(format!(
                    "the component imports `{name}`; this Baton serves baton:plugin@0.1.x"
                ));
            }
            if interface != "types" && !manifest.grants(interface) {
                return Err(format!(
                    "the component imports `baton:plugin/{interface}`, but plugin.toml does not grant the `{interface}` capability (add it to `capabilities` to allow it)"
                ));
            }
        } else if !BASE_WASI.iter().any(|p| name.starts_with(p)) {
            return Err(format!(
                "the component imports `{name}`, which Baton does not offer to plugins"
            ));
        }
    }
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let missing: Vec<&str> = manifest
        .world
        .entry_points()
        .iter()
        .copied()
        .filter(|e| !exports.iter().any(|x| x == e))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "plugin.toml says world `{}`, but the component does not export {} (it exports: {}); was it built for another world?",
            manifest.world,
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            }
        ));
    }
    Ok(imports)
}

/// The WASI interfaces language runtimes pull in. They are linked, but the
/// context behind them has no files, environment, arguments or network.
const BASE_WASI: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

fn check_descriptor(d: power_up::Descriptor) -> Result<Descriptor, String> {
    let name_ok = (1..=64).contains(&d.name.len())
        && d.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name_ok {
        return Err(format!(
            "describe(): name `{}` must be 1 to 64 of a-z, 0-9 and _",
            d.name
        ));
    }
    let parameters: serde_json::Value = serde_json::from_str(&d.parameters)
        .map_err(|e| format!("describe(): parameters are not JSON: {e}"))?;
    if !parameters.is_object() {
        return Err("describe(): parameters must be a JSON schema object".into());
    }
    Ok(Descriptor {
        name: d.name,
        description: d.description,
        parameters,
    })
}

/// Changes whenever the manifest or its component file changes.
fn fingerprint(folder: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    let manifest = std::fs::read(folder.join("plugin.toml")).unwrap_or_default();
    hash.update(&manifest);
    if let Ok(m) = Manifest::parse(&String::from_utf8_lossy(&manifest))
        && let Ok(meta) = std::fs::metadata(folder.join(&m.component))
    {
        hash.update(meta.len().to_le_bytes());
        if let Ok(modified) = meta.modified() {
            let ns = modified
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            hash.update(ns.to_le_bytes());
        }
    }
    hex::encode(hash.finalize())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
