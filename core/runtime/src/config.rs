//! `baton.toml`: what an operator configures. Secrets never live here; they
//! come from the environment (API.md, "Operator conventions").

use crate::hours::Hours;
use baton_bot::ContactField;
use baton_model::routing::Assignment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::time::Duration;

/// The whole configuration file. Every table is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[bot]`: the default bot, whose id is `default`.
    #[serde(default)]
    pub bot: BotConfig,
    /// `[bots.<id>]`: further bots, of the same shape as `[bot]`.
    #[serde(default)]
    pub bots: BTreeMap<String, BotConfig>,
    /// `[limits]`: input size and rate limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[webhooks]`: delivery timing.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// `[delivery]`: retries of messages to platforms (the delivery outbox).
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// `[conversations]`: lifecycle timing.
    #[serde(default)]
    pub conversations: ConversationsConfig,
    /// `[security]`: what outbound requests may reach.
    #[serde(default)]
    pub security: SecurityConfig,
    /// `[[departments]]`: teams with their own hours, topics and assignment.
    #[serde(default)]
    pub departments: Vec<DepartmentConfig>,
    /// `[routing]`: assignment for conversations without a department.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// `[llm]`: an OpenAI-compatible chat-completions server; none by default.
    #[serde(default)]
    pub llm: Option<LlmConfig>,
    /// `[plugins]`: limits over what plugin manifests ask for, and
    /// `[plugins.config.<id>]` values over their config defaults.
    #[serde(default)]
    pub plugins: baton_plugins::PluginSettings,
    /// `[channels.<kind>]`: a platform channel is on when its table is here.
    /// Each channel crate reads its own table (the runtime does not know them).
    #[serde(default)]
    pub channels: BTreeMap<String, toml::Table>,
}

/// The platform channels a `[channels.<kind>]` table may switch on.
pub const PLATFORM_CHANNELS: &[&str] = &["slack", "telegram", "discord", "email"];

/// A configuration that parsed but does not hold together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.check().map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// Checks what the file's shape cannot: references between tables.
    pub fn check(&self) -> Result<(), String> {
        self.plugins.check()?;
        for kind in self.channels.keys() {
            if !PLATFORM_CHANNELS.contains(&kind.as_str()) {
                return Err(format!(
                    "[channels.{kind}]: unknown channel; known are {}",
                    PLATFORM_CHANNELS.join(", ")
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for d in &self.departments {
            if d.id.trim().is_empty() {
                return Err("[[departments]]: every department needs an `id`".into());
            }
            if !seen.insert(d.id.as_str()) {
                return Err(format!("[[departments]]: the id `{}` is used twice", d.id));
            }
            crate::hours::time_zone(&d.timezone)
                .map_err(|e| format!("department `{}`: {e}", d.id))?;
        }
        let all = std::iter::once(("default", &self.bot))
            .chain(self.bots.iter().map(|(id, b)| (id.as_str(), b)));
        for (id, bot) in all {
            self.check_bot(bot)
                .map_err(|e| format!("bot `{id}`: {e}"))?;
        }
        if let Some(llm) = &self.llm {
            if !(llm.base_url.starts_with("http://") || llm.base_url.starts_with("https://")) {
                return Err(format!(
                    "[llm] base_url must be an http(s) URL, got `{}`",
                    llm.base_url
                ));
            }
            if llm.model.trim().is_empty() {
                return Err("[llm] needs a `model`".into());
            }
        }
        Ok(())
    }

    /// Checks one bot's references to departments.
    pub fn check_bot(&self, bot: &BotConfig) -> Result<(), String> {
        let known = |d: &str| self.departments.iter().any(|x| x.id == d);
        if let Some(d) = &bot.handover.department
            && !known(d)
        {
            return Err(format!(
                "handover.department `{d}` is not a configured department"
            ));
        }
        for (i, a) in bot.handover.actions.iter().enumerate() {
            if let ActionConfig::Assign {
                department: Some(d),
                ..
            } = a
                && !known(d)
            {
                return Err(format!(
                    "handover.actions[{i}]: department `{d}` is not a configured department"
                ));
            }
            if let ActionConfig::Webhook { url, .. } = a
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(format!(
                    "handover.actions[{i}]: webhook url must be http(s)"
                ));
            }
            if let ActionConfig::Plugin { plugin } = a
                && plugin.trim().is_empty()
            {
                return Err(format!(
                    "handover.actions[{i}]: a plugin action names its plugin's id"
                ));
            }
        }
        Ok(())
    }

    /// The department with this id.
    pub fn department(&self, id: &str) -> Option<&DepartmentConfig> {
        self.departments.iter().find(|d| d.id == id)
    }

    /// The department that handles a topic (an intent or knowledge-base entry id).
    pub fn department_for_topic(&self, topic: &str) -> Option<&DepartmentConfig> {
        self.departments
            .iter()
            .find(|d| d.topics.iter().any(|t| t == topic))
    }

    /// The bot with this id (`default` is `[bot]`).
    pub fn bot(&self, id: &str) -> Option<&BotConfig> {
        if id == crate::DEFAULT_BOT {
            Some(&self.bot)
        } else {
            self.bots.get(id)
        }
    }
}

/// One bot: `[bot]` or `[bots.<id>]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BotConfig {
    /// `name`: how the bot signs its messages. Default `"Baton"`.
    pub name: String,
    /// `greeting`: the first message of every new conversation; none when empty.
    /// Default: a short hello.
    pub greeting: String,
    /// `knowledge`: a folder of knowledge-base files (`*.toml` entries and
    /// intents, `*.md` documents, an optional `phrases.toml`). Default: the
    /// demo shop's sample knowledge base, compiled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knowledge: Option<std::path::PathBuf>,
    /// `[bot.handover]`: when and how conversations go to a human.
    pub handover: HandoverConfig,
}

impl Default for BotConfig {
    fn default() -> Self {
        Self {
            name: "Baton".to_owned(),
            greeting:
                "Hi! I'm the Baton demo bot. Ask me anything, or ask for a human at any time."
                    .to_owned(),
            knowledge: None,
            handover: HandoverConfig::default(),
        }
    }
}

/// `[bot.handover]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandoverConfig {
    /// `enabled`: whether visitors can reach a human at all. Default `true`.
    pub enabled: bool,
    /// `monitoring`: show every `bot` conversation to agents live (seed 004). Default `false`.
    pub monitoring: bool,
    /// `pause_bot_for`: bot silence window opened at each hand-over, as seconds or
    /// `"30s"`, `"15m"`, `"2h"`. Default `0` (none).
    #[serde(deserialize_with = "duration", serialize_with = "serialize_duration")]
    pub pause_bot_for: Duration,
    /// `online_message`: what the visitor is told when the conversation is handed over.
    pub online_message: String,
    /// `request_button_after`: how many bot answers the visitor sees before the
    /// widget shows the "Talk to a human" button. Default `1`.
    pub request_button_after: u32,
    /// `offline_message`: what the visitor is told when nobody is available, above
    /// the leave-a-message form.
    pub offline_message: String,
    /// `cycle_count`: not-understood answers before the bot hands over
    /// (`bot_failure`). `0` switches it off. Default `3`.
    pub cycle_count: u32,
    /// `phrases`: more ways of asking for a human, on top of the built-in
    /// ones (English, German, French, Spanish, Portuguese, Italian, Dutch).
    pub phrases: Vec<String>,
    /// `repeated_requests`: how many times a visitor asks for a human in
    /// words before it happens (`1`: the first time). The button always works.
    pub repeated_requests: u32,
    /// `failed_to_resolve`: "that didn't help" replies before the bot hands
    /// over. `0` switches it off. Default `2`.
    pub failed_to_resolve: u32,
    /// `lack_of_information`: hand over when the topic is known but the
    /// knowledge base has no answer. Default `true`.
    pub lack_of_information: bool,
    /// `frustration`: `false`, `true` (threshold -0.6), or a sentiment
    /// threshold in `-1..0`: a visitor message at or below it hands over.
    pub frustration: Frustration,
    /// `intents`: intent ids that always go to a human.
    pub intents: Vec<String>,
    /// `department`: where this bot's hand-overs go when no topic routes them
    /// elsewhere (seed 001: the button belongs to a department). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// `collect_contact`: ask for the visitor's details before a hand-over:
    /// `true` (email), `false`, or a list of `"email"`, `"name"`, `"phone"`.
    /// Details the contact already has are not asked. Default `false`.
    pub collect_contact: CollectContact,
    /// `queue_message`: what the visitor is told when everyone is busy;
    /// `{position}` becomes their place in the queue.
    pub queue_message: String,
    /// `closing_message`: the text of the `closing_message` action when it
    /// names none.
    pub closing_message: String,
    /// `action_timeout`: how long one post-hand-over action may take. Default `"10s"`.
    #[serde(deserialize_with = "duration", serialize_with = "serialize_duration")]
    pub action_timeout: Duration,
    /// `[[bot.handover.actions]]`: what happens after a hand-over, in order.
    pub actions: Vec<ActionConfig>,
}

/// The contact details the collector asks for; empty is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectContact(pub Vec<ContactField>);

impl Serialize for CollectContact {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for CollectContact {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Switch(bool),
            Fields(Vec<ContactField>),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "collect_contact takes true, false, or a list of \"email\", \"name\", \"phone\"",
            )
        })?;
        Ok(match raw {
            Raw::Switch(true) => CollectContact(vec![ContactField::Email]),
            Raw::Switch(false) => CollectContact(vec![]),
            Raw::Fields(mut f) => {
                // Email first: it is what the team needs to answer later.
                f.sort_by_key(|f| *f != ContactField::Email);
                f.dedup();
                CollectContact(f)
            }
        })
    }
}

/// One post-hand-over action (seed 002), run in the order listed.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionConfig {
    /// Give the conversation to `to` (a staff email), or pick someone in
    /// `department` (default: the conversation's) by `mode`.
    Assign {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        department: Option<String>,
        #[serde(default)]
        mode: AssignMode,
    },
    /// Create a task for `assignee` (a staff email; default the conversation's
    /// assignee), due `due` after the hand-over.
    Task {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default = "default_task_description")]
        description: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignee: Option<String>,
        #[serde(
            default = "default_task_due",
            deserialize_with = "duration",
            serialize_with = "serialize_duration"
        )]
        due: Duration,
    },
    /// Notify `to` (a staff email; default the assignee, else every owner) in the inbox.
    Notify {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// Tell the visitor what happens next.
    ClosingMessage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Keep the bot silent for `for` after the hand-over.
    PauseBot {
        #[serde(
            rename = "for",
            deserialize_with = "duration",
            serialize_with = "serialize_duration"
        )]
        duration: Duration,
    },
    /// Add tags to the conversation.
    Tags { tags: Vec<String> },
    /// POST the conversation to `url`, signed with `secret` when given.
    Webhook {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
    /// Run an action plugin (by its manifest id), from the durable queue.
    /// When a bot lists none, every action plugin that is on runs.
    Plugin { plugin: String },
}

/// How the `assign` action picks someone when it names nobody.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignMode {
    #[default]
    RoundRobin,
    LeastBusy,
}

impl ActionConfig {
    /// The action's name in logs, the run log and reports.
    pub fn name(&self) -> &'static str {
        match self {
            ActionConfig::Assign { .. } => "assign",
            ActionConfig::Task { .. } => "task",
            ActionConfig::Notify { .. } => "notify",
            ActionConfig::ClosingMessage { .. } => "closing_message",
            ActionConfig::PauseBot { .. } => "pause_bot",
            ActionConfig::Tags { .. } => "tags",
            ActionConfig::Webhook { .. } => "webhook",
            ActionConfig::Plugin { .. } => "plugin",
        }
    }
}

fn default_task_description() -> String {
    "will be created by AI".to_owned()
}

fn default_task_due() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// `[[departments]]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DepartmentConfig {
    /// `id`: how bots, staff and the API name it.
    pub id: String,
    /// `name`: how people see it. Default: the id.
    #[serde(default)]
    pub name: Option<String>,
    /// `timezone`: an IANA zone such as `"Europe/Berlin"`. Default `"UTC"`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// `hours`: when the department answers, e.g. `["mon-fri 09:00-17:30",
    /// "sat 10:00-14:00"]` in its time zone. Empty (the default) is always open.
    #[serde(default)]
    pub hours: Hours,
    /// `assignment`: `"manual"` (claim, the default), `"round_robin"` or `"least_busy"`.
    #[serde(default)]
    pub assignment: Assignment,
    /// `topics`: intents or knowledge-base entry ids routed to this department.
    #[serde(default)]
    pub topics: Vec<String>,
}

impl DepartmentConfig {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

fn utc() -> String {
    "UTC".to_owned()
}

/// `[routing]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// `assignment` for conversations without a department. Default `"manual"`.
    pub assignment: Assignment,
}

/// `[llm]`: an OpenAI-compatible chat-completions server. The key comes from
/// `BATON_LLM_API_KEY`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// `base_url`: the API root, e.g. `"http://127.0.0.1:11434/v1"`; requests go to
    /// `<base_url>/chat/completions`.
    pub base_url: String,
    /// `model`: the model name the server knows.
    pub model: String,
    /// `system_prompt`: the instructions; the knowledge base's closest
    /// entries are appended as context.
    #[serde(default = "default_system_prompt")]
    pub system_prompt: String,
    /// `timeout`: the longest a reply may take before the built-in bot
    /// answers instead. Default `"20s"`.
    #[serde(
        default = "default_llm_timeout",
        deserialize_with = "duration",
        serialize_with = "serialize_duration"
    )]
    pub timeout: Duration,
    /// `stream`: stream replies to the widget as they are written. Default `true`.
    #[serde(default = "yes")]
    pub stream: bool,
    /// `context_entries`: how many knowledge-base entries go into the prompt. Default 3.
    #[serde(default = "three")]
    pub context_entries: usize,
    /// `temperature`: passed through when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
}

fn default_system_prompt() -> String {
    "You are the customer support assistant of this business. Answer briefly and only from \
     the knowledge base below; if it does not cover the question, say so. If the visitor \
     asks for a person, is upset, or needs something only staff can do (refunds, account \
     changes), call the request_human tool."
        .to_owned()
}

fn default_llm_timeout() -> Duration {
    Duration::from_secs(20)
}

fn yes() -> bool {
    true
}

fn three() -> usize {
    3
}

/// The frustration trigger's threshold, or off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frustration(pub Option<f64>);

impl Frustration {
    pub const DEFAULT_THRESHOLD: f64 = -0.6;
}

impl Serialize for Frustration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(t) => s.serialize_f64(t),
            None => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for Frustration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Switch(bool),
            Threshold(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Switch(true) => Ok(Frustration(Some(Self::DEFAULT_THRESHOLD))),
            Raw::Switch(false) => Ok(Frustration(None)),
            Raw::Threshold(t) if (-1.0..0.0).contains(&t) => Ok(Frustration(Some(t))),
            Raw::Threshold(t) => Err(serde::de::Error::custom(format!(
                "frustration threshold {t} is outside -1..0 (or write true / false)"
            ))),
        }
    }
}

impl Default for HandoverConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            monitoring: false,
            pause_bot_for: Duration::ZERO,
            online_message:
                "I'm handing you over to a human. Someone from the team will be with you shortly."
                    .to_owned(),
            request_button_after: 1,
            cycle_count: 3,
            phrases: vec![],
            repeated_requests: 1,
            failed_to_resolve: 2,
            lack_of_information: true,
            frustration: Frustration(Some(Frustration::DEFAULT_THRESHOLD)),
            intents: vec![
                "refund".to_owned(),
                "billing_dispute".to_owned(),
                "complaint".to_owned(),
            ],
            offline_message: "Nobody from the team is available right now. Leave your email \
                              and a message, and we'll get back to you."
                .to_owned(),
            department: None,
            collect_contact: CollectContact::default(),
            queue_message: "Everyone on the team is busy right now. You are number {position} \
                            in the queue; someone will be with you as soon as possible."
                .to_owned(),
            closing_message: "Thank you! Someone from the team will get back to you.".to_owned(),
            action_timeout: Duration::from_secs(10),
            actions: vec![],
        }
    }
}

/// `[limits]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `widget_messages_per_second`: sustained rate per visitor token and per IP. Default 10.
    pub widget_messages_per_second: u32,
    /// `widget_burst`: how many requests may come at once before the rate applies. Default 30.
    pub widget_burst: u32,
    /// `widget_ip_requests_per_second`: widget requests per client IP, all visitors behind it
    /// together (an office behind one NAT is many people). Default 100.
    pub widget_ip_requests_per_second: u32,
    /// `widget_ip_burst`: default 300.
    pub widget_ip_burst: u32,
    /// `staff_requests_per_second`: per signed-in user or API token. Default 50.
    pub staff_requests_per_second: u32,
    /// `staff_burst`: default 200.
    pub staff_burst: u32,
    /// `max_message_bytes`: the longest chat message, in bytes of UTF-8. Default 65536.
    pub max_message_bytes: usize,
    /// `max_body_bytes`: the largest JSON request body. Default 262144.
    pub max_body_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            widget_messages_per_second: 10,
            widget_burst: 30,
            widget_ip_requests_per_second: 100,
            widget_ip_burst: 300,
            staff_requests_per_second: 50,
            staff_burst: 200,
            max_message_bytes: 64 * 1024,
            max_body_bytes: 256 * 1024,
        }
    }
}

/// `[webhooks]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// `retry_base`: the first retry delay; each later one doubles. Default `"2s"`.
    #[serde(deserialize_with = "duration")]
    pub retry_base: Duration,
    /// `retry_max`: the longest delay between two attempts. Default `"10m"`.
    #[serde(deserialize_with = "duration")]
    pub retry_max: Duration,
    /// `max_attempts`: after this many failures a delivery is marked failed. Default 15.
    pub max_attempts: i64,
    /// `timeout`: how long one attempt may take. Default `"10s"`.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
            max_attempts: 15,
            timeout: Duration::from_secs(10),
        }
    }
}

/// `[delivery]`: how messages to platforms (email, Telegram, Slack,
/// Discord) are retried from the delivery outbox.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// `retry_base`: the first retry delay; each later one doubles. Default `"1s"`.
    #[serde(deserialize_with = "duration")]
    pub retry_base: Duration,
    /// `retry_max`: the longest delay between two attempts. Default `"5m"`.
    #[serde(deserialize_with = "duration")]
    pub retry_max: Duration,
    /// `max_attempts`: after this many failed attempts a message is marked
    /// not delivered (staff can send it again). Default 12, about half an
    /// hour of trying.
    pub max_attempts: i64,
    /// `timeout`: how long one attempt may take, waits for a platform's
    /// rate limit included. Default `"2m"`.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_attempts: 12,
            timeout: Duration::from_secs(120),
        }
    }
}

/// `[security]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// `allow_private_webhooks`: let webhooks and `webhook` actions reach
    /// loopback, private and link-local addresses (receivers on your own
    /// network, tests). Also `BATON_ALLOW_PRIVATE_WEBHOOKS=true`. Default
    /// `false`.
    pub allow_private_webhooks: bool,
}

/// `[conversations]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversationsConfig {
    /// `abandon_after`: a `waiting` conversation nobody claims within this time is
    /// resolved as abandoned. Default `0` (never).
    #[serde(deserialize_with = "duration")]
    pub abandon_after: Duration,
}

impl Default for ConversationsConfig {
    fn default() -> Self {
        Self {
            abandon_after: Duration::ZERO,
        }
    }
}

/// Reads a duration written as whole seconds (`90`) or with a unit (`"500ms"`, `"30s"`, `"15m"`, `"2h"`, `"1d"`).
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// Writes a duration the way [`duration`] reads it: whole seconds, else `"<n>ms"`.
pub fn serialize_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        s.serialize_u64(u64::try_from(ms / 1000).unwrap_or(u64::MAX))
    } else {
        s.serialize_str(&format!("{ms}ms"))
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration `{text}`: expected e.g. 30s, 15m, 2h"))?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        other => {
            return Err(format!(
                "invalid duration unit `{other}` in `{text}`: use ms, s, m, h or d"
            ));
        }
    };
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default_configuration() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.bot.name, "Baton");
        assert_eq!(c.limits.widget_burst, 30);
        assert!(c.bot("default").is_some());
        assert!(c.bot("other").is_none());
    }

    #[test]
    fn durations_take_seconds_or_units() {
        let c = Config::from_toml(
            "[bot.handover]\npause_bot_for = \"15m\"\n[webhooks]\nretry_base = 1\n",
        )
        .unwrap();
        assert_eq!(c.bot.handover.pause_bot_for, Duration::from_secs(900));
        assert_eq!(c.webhooks.retry_base, Duration::from_secs(1));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn actions_departments_and_the_collector_parse() {
        let c = Config::from_toml(
            r#"
[[departments]]
id = "billing"
timezone = "Europe/Berlin"
hours = ["mon-fri 09:00-17:00"]
assignment = "least_busy"
topics = ["refund"]

[bot.handover]
department = "billing"
collect_contact = ["phone", "email"]

[[bot.handover.actions]]
type = "task"

[[bot.handover.actions]]
type = "pause_bot"
for = "30m"

[[bot.handover.actions]]
type = "assign"
department = "billing"
mode = "least_busy"
"#,
        )
        .unwrap();
        let h = &c.bot.handover;
        assert_eq!(
            h.collect_contact.0,
            [ContactField::Email, ContactField::Phone]
        );
        assert_eq!(
            h.actions[0],
            ActionConfig::Task {
                title: None,
                description: "will be created by AI".into(),
                assignee: None,
                due: Duration::from_secs(86_400),
            }
        );
        assert_eq!(
            h.actions[1],
            ActionConfig::PauseBot {
                duration: Duration::from_secs(1800)
            }
        );
        assert_eq!(c.department_for_topic("refund").unwrap().id, "billing");
        // The round trip the admin API relies on.
        let json = serde_json::to_value(&c.bot).unwrap();
        let back: BotConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.handover.actions, h.actions);
    }

    #[test]
    fn broken_references_are_refused() {
        for (toml, needle) in [
            ("[bot.handover]\ndepartment = \"nope\"\n", "nope"),
            (
                "[[departments]]\nid = \"a\"\ntimezone = \"Mars/Olympus\"\n",
                "Mars/Olympus",
            ),
            (
                "[[departments]]\nid = \"a\"\nhours = [\"someday 9-5\"]\n",
                "someday",
            ),
            (
                "[[bot.handover.actions]]\ntype = \"teleport\"\n",
                "teleport",
            ),
            ("[llm]\nbase_url = \"ftp://x\"\nmodel = \"m\"\n", "http"),
        ] {
            let err = Config::from_toml(toml).unwrap_err().to_string();
            assert!(err.contains(needle), "{toml}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = Config::from_toml("[bot]\nnmae = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("nmae"), "{err}");
    }
}
