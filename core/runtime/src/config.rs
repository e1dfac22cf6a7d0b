//! `baton.toml`: what an operator configures. Secrets never live here; they
//! come from the environment (API.md, "Operator conventions").

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
    /// `[conversations]`: lifecycle timing.
    #[serde(default)]
    pub conversations: ConversationsConfig,
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
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
    fn unknown_keys_are_refused_with_their_name() {
        let err = Config::from_toml("[bot]\nnmae = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("nmae"), "{err}");
    }
}
