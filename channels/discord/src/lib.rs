//! The Discord channel, through serenity.
//!
//! Visitors write to the bot in a direct message, or post in a configured
//! support channel of a server: each top-level message there opens a public
//! thread, and the conversation lives in that thread. Events arrive over the
//! gateway (serenity's shard runner reconnects and resumes; if the client
//! stops altogether, [`Channel::run`] starts it again with back-off). Both
//! paths go through the same pure [`normalize`] and the runtime's `Ingest`.
//!
//! Delivery sends text with buttons as message components (quick replies and
//! "Talk to a human" as buttons, links as link buttons), agents' replies
//! prefixed with their name, attachments as links, long texts split at
//! Discord's 2000 characters. Rate limits: serenity's own rate limiter waits
//! out 429s against Discord; behind an `api_url` proxy (which limits for
//! itself, and in tests) it is off, and a 429 is retried here.
//!
//! Gateway intents: `GUILD_MESSAGES`, `DIRECT_MESSAGES` and the privileged
//! `MESSAGE_CONTENT` (switched on in the Developer Portal).
//!
//! Architecture invariant: like every channel, this crate never decides who
//! may speak; the runtime does, before anything reaches [`Channel::deliver`].

pub mod normalize;

use async_trait::async_trait;
use baton_channel::{
    Backoff, Channel, Delivered, Error, Inbound, Ingest, Outbound, RawInbound, Result,
    display_text, retry_rate_limited,
};
use baton_model::{ActionKind, ChannelKind};
use normalize::{Classified, Place, Where};
use serde::Deserialize;
use serenity::builder::{
    CreateActionRow, CreateButton, CreateInteractionResponse, CreateMessage, CreateThread,
};
use serenity::client::{ClientBuilder, Context, EventHandler};
use serenity::http::{Http, HttpBuilder};
use serenity::model::application::{ButtonStyle, Interaction};
use serenity::model::channel::Message;
use serenity::model::gateway::{GatewayIntents, Ready};
use serenity::model::id::{ChannelId, MessageId};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// The environment variable the bot token is read from.
pub const TOKEN_ENV: &str = "DISCORD_BOT_TOKEN";

/// Discord's limit on a message's content.
const MAX_CONTENT: usize = 2000;

/// `[channels.discord]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// A proxy in front of Discord's HTTP API (twilight-http-proxy, tests):
    /// requests go there and serenity's rate limiter is off.
    #[serde(default)]
    pub api_url: Option<String>,
    /// The id of the channel where a top-level message opens a conversation
    /// (in a thread of its own). Without it, only DMs reach the bot.
    #[serde(default)]
    pub support_channel: Option<String>,
}

/// The gateway intents Baton asks for.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// The channel. Cheap to clone; clones share the HTTP client and the bot identity.
#[derive(Clone)]
pub struct DiscordChannel {
    token: String,
    config: DiscordConfig,
    support_channel: Option<u64>,
    http: Arc<Http>,
    bot_id: Arc<OnceLock<u64>>,
}

impl DiscordChannel {
    /// Reads `[channels.discord]` and the token (`env` is `std::env::var` in
    /// production). Says what is missing or wrong.
    pub fn from_config(
        table: &toml::Table,
        env: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, String> {
        let config: DiscordConfig = table
            .clone()
            .try_into()
            .map_err(|e| format!("[channels.discord]: {e}"))?;
        let token = env(TOKEN_ENV)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("[channels.discord] needs the bot token in {TOKEN_ENV}"))?;
        let support_channel = match &config.support_channel {
            Some(id) => Some(
                id.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!(
                            "[channels.discord] support_channel `{id}` is not a channel id \
                         (a number: right-click the channel, Copy Channel ID)"
                        )
                    })?,
            ),
            None => None,
        };
        if let Some(url) = &config.api_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "[channels.discord] api_url `{url}` must start with http:// or https://"
            ));
        }
        let channel = Self {
            http: Arc::new(http_for(&token, &config)),
            token,
            config,
            support_channel,
            bot_id: Arc::new(OnceLock::new()),
        };
        Ok(channel)
    }

    fn at(&self) -> Where {
        Where {
            bot_id: self.bot_id.get().copied(),
            support_channel: self.support_channel,
        }
    }

    /// Takes one message or press from the gateway.
    async fn take(&self, classified: Classified, ingest: &Arc<dyn Ingest>) {
        let Classified {
            inbound,
            place,
            channel_id,
        } = classified;
        match place {
            Place::Dm => {}
            Place::SupportChannel => {
                // A redelivered first message finds its thread already there.
                if !self.knows(&inbound, ingest).await {
                    self.open_thread(channel_id, &inbound).await;
                }
            }
            Place::MaybeThread => {
                if !self.knows(&inbound, ingest).await {
                    debug!(channel_id, "message in a channel that is not ours; ignored");
                    return;
                }
            }
        }
        if let Err(e) = ingest.ingest(inbound).await {
            // Refused input (an unknown button, an empty message) is not the
            // platform's fault; there is nothing to redeliver.
            warn!(channel = "discord", error = %e, "event not taken");
        }
    }

    async fn knows(&self, inbound: &Inbound, ingest: &Arc<dyn Ingest>) -> bool {
        match ingest
            .has_thread(ChannelKind::Discord, &inbound.thread_key)
            .await
        {
            Ok(known) => known,
            Err(e) => {
                warn!(error = %e, "cannot look the thread up");
                false
            }
        }
    }

    /// Opens the public thread a support-channel conversation lives in. If
    /// Discord refuses (the bot lacks "Create Public Threads"), the message
    /// is still stored, so an agent sees it in the inbox.
    async fn open_thread(&self, channel_id: u64, inbound: &Inbound) {
        let Some(message_id) = inbound
            .channel_message_id
            .as_deref()
            .and_then(|m| m.parse::<u64>().ok())
        else {
            return;
        };
        let name = normalize::thread_name(inbound);
        let create = || {
            ChannelId::new(channel_id).create_thread_from_message(
                self.http.clone(),
                MessageId::new(message_id),
                CreateThread::new(name.clone()),
            )
        };
        if let Err(e) =
            retry_rate_limited(ChannelKind::Discord, "start thread", create, wait_for).await
        {
            error!(error = %e, channel_id, "cannot open a thread in the support channel; \
                   does the bot have Create Public Threads and Send Messages in Threads?");
        }
    }

    async fn acknowledge(&self, ctx: &Context, interaction: &Interaction) {
        if let Interaction::Component(press) = interaction
            && let Err(e) = press
                .create_response(&ctx.http, CreateInteractionResponse::Acknowledge)
                .await
        {
            debug!(error = %e, "cannot acknowledge a button press");
        }
    }
}

/// The HTTP client: Discord's own, or a proxy with serenity's rate limiter off.
fn http_for(token: &str, config: &DiscordConfig) -> Http {
    let builder = HttpBuilder::new(token);
    match &config.api_url {
        Some(url) => builder
            .proxy(url.trim_end_matches('/'))
            .ratelimiter_disabled(true)
            .build(),
        None => builder.build(),
    }
}

/// How long a failed call asks to wait: serenity keeps the status of a 429
/// but not its `retry_after`, so one second, then again up to
/// [`baton_channel::DELIVERY_ATTEMPTS`] times. Other errors are not retried.
fn wait_for(e: &serenity::Error) -> Option<Duration> {
    match e {
        serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r))
            if r.status_code.as_u16() == 429 =>
        {
            Some(Duration::from_secs(1))
        }
        _ => None,
    }
}

/// The gateway's events, handed to the channel.
struct Handler {
    channel: DiscordChannel,
    ingest: Arc<dyn Ingest>,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        let _ = self.channel.bot_id.set(ready.user.id.get());
        info!(bot = %ready.user.name, "discord gateway is ready");
    }

    async fn message(&self, _ctx: Context, message: Message) {
        if let Some(c) = normalize::message(&message, &self.channel.at()) {
            self.channel.take(c, &self.ingest).await;
        }
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        // Discord wants an answer within three seconds, before anything slow.
        self.channel.acknowledge(&ctx, &interaction).await;
        if let Interaction::Component(press) = &interaction
            && let Some(c) = normalize::component(press)
        {
            self.channel.take(c, &self.ingest).await;
        }
    }
}

/// Buttons as message components: five to a row, at most five rows.
fn components(out: &Outbound<'_>) -> Vec<CreateActionRow> {
    let buttons: Vec<CreateButton> = out
        .message
        .actions
        .iter()
        .filter_map(|a| {
            let label: String = a.label.chars().take(80).collect();
            match a.kind {
                ActionKind::Link => Some(CreateButton::new_link(a.url.clone()?).label(label)),
                // Discord allows 100 characters of custom id.
                _ if a.id.len() <= 100 => {
                    let style = if a.kind == ActionKind::RequestHuman {
                        ButtonStyle::Primary
                    } else {
                        ButtonStyle::Secondary
                    };
                    Some(CreateButton::new(a.id.clone()).label(label).style(style))
                }
                _ => None,
            }
        })
        .take(25)
        .collect();
    buttons
        .chunks(5)
        .map(|row| CreateActionRow::Buttons(row.to_vec()))
        .collect()
}

/// Splits a text into pieces Discord accepts, at line breaks where it can.
fn pieces(text: &str) -> Vec<String> {
    let mut out = vec![];
    let (mut current, mut len) = (String::new(), 0);
    for line in text.split_inclusive('\n') {
        for c in line.chars() {
            if len == MAX_CONTENT {
                out.push(std::mem::take(&mut current));
                len = 0;
            }
            current.push(c);
            len += 1;
        }
        // Close to the limit: end the piece at this line break.
        if len > MAX_CONTENT - 200 {
            out.push(std::mem::take(&mut current));
            len = 0;
        }
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

#[async_trait]
impl Channel for DiscordChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Discord
    }

    fn normalize(&self, raw: &RawInbound) -> Result<Vec<Inbound>> {
        normalize::raw(raw, &self.at())
    }

    async fn deliver(&self, out: Outbound<'_>) -> Result<Delivered> {
        let channel = out
            .thread_key
            .and_then(normalize::channel_of)
            .map(ChannelId::new)
            .ok_or_else(|| Error::Rejected {
                channel: ChannelKind::Discord,
                reason: "the conversation has no discord channel".into(),
            })?;
        let texts = pieces(&display_text(out.message));
        let rows = components(&out);
        let last = texts.len() - 1;
        let mut sent_id = None;
        for (i, text) in texts.into_iter().enumerate() {
            let rows = if i == last { rows.clone() } else { vec![] };
            let send = || {
                let mut message = CreateMessage::new().content(text.clone());
                if !rows.is_empty() {
                    message = message.components(rows.clone());
                }
                channel.send_message(self.http.clone(), message)
            };
            let sent =
                retry_rate_limited(ChannelKind::Discord, "send message", send, wait_for).await?;
            sent_id = Some(sent.id.get().to_string());
        }
        Ok(Delivered::Sent {
            platform_id: sent_id,
        })
    }

    /// The gateway, for as long as Baton runs: serenity reconnects a dropped
    /// connection itself; a client that stops (a refused token, intents
    /// that are not enabled) is started again with back-off.
    async fn run(&self, ingest: Arc<dyn Ingest>) -> Result<()> {
        let mut backoff = Backoff::default();
        loop {
            let started = Instant::now();
            let handler = Handler {
                channel: self.clone(),
                ingest: ingest.clone(),
            };
            let client =
                ClientBuilder::new_with_http(http_for(&self.token, &self.config), intents())
                    .event_handler(handler)
                    .await;
            let stopped = match client {
                Ok(mut client) => client.start().await,
                Err(e) => Err(e),
            };
            let why = match stopped {
                Ok(()) => "the gateway connection ended".to_owned(),
                Err(serenity::Error::Gateway(
                    serenity::gateway::GatewayError::DisallowedGatewayIntents,
                )) => "Discord refused the intents: switch on the Message Content intent \
                       in the Developer Portal (Bot → Privileged Gateway Intents)"
                    .to_owned(),
                Err(serenity::Error::Gateway(
                    serenity::gateway::GatewayError::InvalidAuthentication,
                )) => format!("Discord refused the token in {TOKEN_ENV}"),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > Duration::from_secs(60) {
                backoff.reset();
            }
            let wait = backoff.next_wait();
            error!(reason = %why, wait_ms = wait.as_millis() as u64, "discord gateway stopped; starting it again");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_split_within_discords_limit() {
        assert_eq!(pieces("hello"), vec!["hello"]);
        assert_eq!(pieces(""), vec![""]);
        let line = "x".repeat(150) + "\n";
        let long = line.repeat(40);
        let parts = pieces(&long);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_CONTENT));
        assert_eq!(parts.concat(), long);
        // A line longer than the limit is cut inside it.
        let one_line = "é".repeat(4500);
        let parts = pieces(&one_line);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_CONTENT));
        assert_eq!(parts.concat(), one_line);
    }
}
