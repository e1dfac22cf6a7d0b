//! The Telegram channel, through teloxide.
//!
//! Visitors write to the bot in a private chat, or mention it (or reply to
//! it) in a group. Updates arrive by long polling (`getUpdates`, the default)
//! or, in webhook mode, at `POST /api/v1/channels/telegram/webhook`, which
//! refuses any request without Telegram's secret-token header. Both paths
//! go through the same pure [`normalize`] and the runtime's `Ingest`.
//!
//! Delivery sends text with buttons as an inline keyboard (quick replies and
//! "Talk to a human" as callback buttons, links as URL buttons), agents'
//! replies prefixed with their name and attachments as links; "retry after"
//! answers are waited out and retried.
//!
//! Architecture invariant: like every channel, this crate never decides who
//! may speak; the runtime does, before anything reaches [`Channel::deliver`].

pub mod normalize;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use baton_channel::{
    Backoff, Channel, Delivered, Error, Inbound, Ingest, Outbound, RawInbound, Result,
    display_text, error_response, retry_rate_limited, same_secret,
};
use baton_model::{ActionKind, ChannelKind};
use normalize::BotIdentity;
use serde::Deserialize;
use std::future::IntoFuture;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use teloxide::RequestError;
use teloxide::prelude::*;
use teloxide::types::{
    AllowedUpdate, InlineKeyboardButton, InlineKeyboardMarkup, Update, UpdateKind,
};
use tracing::{debug, info, warn};

/// Environment variables the channel reads its secrets from.
pub const TOKEN_ENV: &str = "TELEGRAM_BOT_TOKEN";
pub const WEBHOOK_SECRET_ENV: &str = "TELEGRAM_WEBHOOK_SECRET";
/// The header Telegram sends the webhook secret in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// How updates arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Polling,
    Webhook,
}

/// `[channels.telegram]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The Bot API's base URL (tests and proxies); Telegram's own by default.
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    /// In webhook mode, the public URL Telegram should call; Baton registers
    /// it with `setWebhook` at start. Without it the webhook is left as is.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Long-polling wait, in seconds.
    #[serde(default = "default_poll_timeout")]
    pub poll_timeout_secs: u32,
}

fn default_poll_timeout() -> u32 {
    30
}

/// The channel. Cheap to clone; clones share the bot identity.
#[derive(Clone)]
pub struct TelegramChannel {
    bot: Bot,
    config: TelegramConfig,
    webhook_secret: Option<String>,
    webhook_url: Option<url::Url>,
    me: Arc<OnceLock<BotIdentity>>,
}

impl TelegramChannel {
    /// Reads `[channels.telegram]` and the secrets (`env` is
    /// `std::env::var` in production). Says what is missing or wrong.
    pub fn from_config(
        table: &toml::Table,
        env: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, String> {
        let config: TelegramConfig = table
            .clone()
            .try_into()
            .map_err(|e| format!("[channels.telegram]: {e}"))?;
        let token = env(TOKEN_ENV)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| format!("[channels.telegram] needs the bot token in {TOKEN_ENV}"))?;
        let webhook_secret = env(WEBHOOK_SECRET_ENV).filter(|s| !s.is_empty());
        if config.mode == Mode::Webhook {
            let Some(secret) = &webhook_secret else {
                return Err(format!(
                    "[channels.telegram] mode = \"webhook\" needs {WEBHOOK_SECRET_ENV}"
                ));
            };
            // Telegram allows 1-256 characters A-Z, a-z, 0-9, _ and -.
            if secret.len() > 256
                || !secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "{WEBHOOK_SECRET_ENV} may hold only A-Z, a-z, 0-9, _ and - (at most 256)"
                ));
            }
        }
        let webhook_url = match &config.webhook_url {
            Some(u) => Some(
                u.parse()
                    .map_err(|e| format!("[channels.telegram] webhook_url `{u}`: {e}"))?,
            ),
            None => None,
        };
        let mut bot = Bot::new(token);
        if let Some(url) = &config.api_url {
            let url = url
                .parse()
                .map_err(|e| format!("[channels.telegram] api_url `{url}`: {e}"))?;
            bot = bot.set_api_url(url);
        }
        Ok(Self {
            bot,
            config,
            webhook_secret,
            webhook_url,
            me: Arc::new(OnceLock::new()),
        })
    }

    /// Handles one update from polling or the webhook: stores the message,
    /// and stops the spinner on a pressed button. False when the runtime
    /// could not take it for now (the store is away): the update is left
    /// unconfirmed, so Telegram brings it again.
    async fn handle(&self, update: &Update, ingest: &Arc<dyn Ingest>) -> bool {
        if let Some(inbound) = normalize::update_to_inbound(update, self.me.get())
            && !self.ingest_one(inbound, ingest).await
        {
            return false;
        }
        if let UpdateKind::CallbackQuery(q) = &update.kind
            && let Err(e) = self.bot.answer_callback_query(q.id.clone()).await
        {
            debug!(error = %e, "cannot answer a callback query");
        }
        true
    }

    async fn ingest_one(&self, inbound: Inbound, ingest: &Arc<dyn Ingest>) -> bool {
        match ingest.ingest(inbound).await {
            Ok(_) => true,
            // Passing trouble (the store, a busy conversation): again later.
            Err(Error::Other(e)) => {
                warn!(channel = "telegram", error = %e, "update not taken for now; it comes again");
                false
            }
            // Refused input (an unknown button, an empty message) is not the
            // platform's fault; acknowledging it stops redelivery.
            Err(e) => {
                warn!(channel = "telegram", error = %e, "update not taken");
                true
            }
        }
    }

    async fn learn_who_i_am(&self) {
        let me = until_accepted("getMe", || self.bot.get_me().into_future()).await;
        let identity = BotIdentity {
            id: me.user.id.0,
            username: me.user.username.clone().unwrap_or_default(),
        };
        info!(username = %identity.username, "telegram bot is ready");
        let _ = self.me.set(identity);
    }

    async fn poll(&self, ingest: Arc<dyn Ingest>) -> Result<()> {
        // A webhook left behind would make getUpdates fail with 409.
        if let Err(e) = self.bot.delete_webhook().await {
            warn!(error = %e, "cannot remove an old telegram webhook");
        }
        let mut offset: i32 = 0;
        let mut backoff = Backoff::default();
        loop {
            let request = self
                .bot
                .get_updates()
                .offset(offset)
                .timeout(self.config.poll_timeout_secs)
                .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
            match request.await {
                Ok(updates) => {
                    backoff.reset();
                    for update in &updates {
                        if !self.handle(update, &ingest).await {
                            // Not confirmed: the next getUpdates brings it again.
                            tokio::time::sleep(backoff.next_wait()).await;
                            break;
                        }
                        offset = offset.max(update.id.as_offset());
                    }
                }
                Err(e) => {
                    let wait = wait_for(&e).unwrap_or_else(|| backoff.next_wait());
                    warn!(error = %e, wait_ms = wait.as_millis() as u64, "telegram getUpdates failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn register_webhook(&self) {
        let (Some(url), Some(secret)) = (&self.webhook_url, &self.webhook_secret) else {
            return;
        };
        until_accepted("setWebhook", || {
            self.bot
                .set_webhook(url.clone())
                .secret_token(secret.clone())
                .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery])
                .into_future()
        })
        .await;
        info!("telegram webhook registered");
    }
}

#[derive(Clone)]
struct Hook {
    channel: TelegramChannel,
    ingest: Arc<dyn Ingest>,
}

/// `POST /api/v1/channels/telegram/webhook`: the secret first, then the body.
async fn webhook(
    State(hook): State<Hook>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let expected = hook.channel.webhook_secret.as_deref().unwrap_or_default();
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if expected.is_empty() || !same_secret(given, expected.as_bytes()) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong X-Telegram-Bot-Api-Secret-Token",
        );
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("cannot read the update: {e}"),
            );
        }
    };
    if !hook.channel.handle(&update, &hook.ingest).await {
        // Telegram delivers a webhook update again until it is answered 2xx.
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the update could not be stored for now; send it again",
        );
    }
    StatusCode::OK.into_response()
}

/// Repeats a call until Telegram accepts it, waiting what it asks or backing off.
async fn until_accepted<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, RequestError>>,
{
    let mut backoff = Backoff::default();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                let wait = wait_for(&e).unwrap_or_else(|| backoff.next_wait());
                warn!(what, error = %e, wait_ms = wait.as_millis() as u64, "telegram refused; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// What "retry after" asked for, capped at a minute.
fn wait_for(e: &RequestError) -> Option<Duration> {
    match e {
        RequestError::RetryAfter(s) => Some(s.duration().min(Duration::from_secs(60))),
        _ => None,
    }
}

fn keyboard(out: &Outbound<'_>) -> Option<InlineKeyboardMarkup> {
    let buttons: Vec<InlineKeyboardButton> = out
        .message
        .actions
        .iter()
        .filter_map(|a| match a.kind {
            ActionKind::Link => {
                let url = a.url.as_deref()?.parse().ok()?;
                Some(InlineKeyboardButton::url(a.label.clone(), url))
            }
            // Telegram allows 64 bytes of callback data.
            _ if a.id.len() <= 64 => Some(InlineKeyboardButton::callback(
                a.label.clone(),
                a.id.clone(),
            )),
            _ => None,
        })
        .collect();
    if buttons.is_empty() {
        return None;
    }
    // One button per row: labels stay readable on a phone.
    Some(InlineKeyboardMarkup::new(
        buttons.into_iter().map(|b| vec![b]),
    ))
}

#[async_trait]
impl Channel for TelegramChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    fn normalize(&self, raw: &RawInbound) -> Result<Vec<Inbound>> {
        normalize::raw(raw, self.me.get())
    }

    async fn deliver(&self, out: Outbound<'_>) -> Result<Delivered> {
        let chat = out
            .thread_key
            .and_then(normalize::chat_of)
            .ok_or_else(|| Error::Rejected {
                channel: ChannelKind::Telegram,
                reason: "the conversation has no telegram chat".into(),
            })?;
        let text = display_text(out.message);
        let markup = keyboard(&out);
        let send = || {
            let mut request = self.bot.send_message(ChatId(chat), text.clone());
            if let Some(m) = &markup {
                request = request.reply_markup(m.clone());
            }
            request.into_future()
        };
        let sent = retry_rate_limited(ChannelKind::Telegram, "sendMessage", send, wait_for).await?;
        Ok(Delivered::Sent {
            platform_id: Some(format!("{chat}:{}", sent.id.0)),
        })
    }

    fn routes(&self, ingest: Arc<dyn Ingest>) -> Option<axum::Router> {
        if self.config.mode != Mode::Webhook {
            return None;
        }
        Some(
            axum::Router::new()
                .route("/webhook", post(webhook))
                .with_state(Hook {
                    channel: self.clone(),
                    ingest,
                }),
        )
    }

    async fn run(&self, ingest: Arc<dyn Ingest>) -> Result<()> {
        self.learn_who_i_am().await;
        match self.config.mode {
            Mode::Polling => self.poll(ingest).await,
            Mode::Webhook => {
                self.register_webhook().await;
                Ok(())
            }
        }
    }
}
