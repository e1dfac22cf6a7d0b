//! The Slack channel and agent console, through slack-morphism.
//!
//! - **Visitors** write to the app in direct messages (an internal
//!   helpdesk). Events arrive over HTTP at `POST /api/v1/channels/slack/events`
//!   (signature checked, 5-minute window, `url_verification` answered) or
//!   over Socket Mode (`SLACK_APP_TOKEN`); both go through [`normalize`].
//! - **Agents** work from a console channel: each escalation from any
//!   channel is posted there with the contact, reason, a summary and Claim /
//!   Hand back / Resolve buttons (`POST /api/v1/channels/slack/interactivity`,
//!   signed); replies in the post's thread reach the visitor under the
//!   agent's name (the Slack user is matched to a Baton user by email); a
//!   losing claim gets an ephemeral "already claimed by <name>"; the
//!   visitor's messages are mirrored into the thread; the post follows the
//!   conversation's state.
//!
//! Architecture invariant: the console acts only through the runtime's
//! `Ingest` (the same rules as the web inbox) and never decides who may speak.

mod console;
pub mod normalize;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use baton_channel::{
    AgentAct, Backoff, Channel, Delivered, Error, Inbound, Ingest, Outbound, RawInbound, Result,
    error_response, retry_rate_limited,
};
use baton_model::wire::EventEnvelope;
use baton_model::{ActionKind, ChannelKind, SenderKind};
use futures_util::{SinkExt, StreamExt};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use normalize::{ConsoleAction, Event, Interaction};
use serde::Deserialize;
use serde_json::{Value, json};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, info, warn};

pub const BOT_TOKEN_ENV: &str = "SLACK_BOT_TOKEN";
pub const SIGNING_SECRET_ENV: &str = "SLACK_SIGNING_SECRET";
pub const APP_TOKEN_ENV: &str = "SLACK_APP_TOKEN";

/// The console's name for its links (conversation ↔ the ts of its post).
const CONSOLE: &str = "slack";

/// How events and button presses arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The Events API and interactivity over HTTP (needs `SLACK_SIGNING_SECRET`).
    #[default]
    Events,
    /// Socket Mode (needs `SLACK_APP_TOKEN`): no public URL needed.
    Socket,
}

/// `[channels.slack]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The Web API's base URL, like `https://slack.com/api` (tests and proxies).
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    /// The channel id (`C…`) escalations are posted to; no console without it.
    #[serde(default)]
    pub console_channel: Option<String>,
    /// Post agents' replies under their own name (`chat:write.customize`);
    /// when off, the text starts with "Name:". Default on.
    #[serde(default = "yes")]
    pub agent_names: bool,
}

fn yes() -> bool {
    true
}

type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// The channel. Cheap to clone.
#[derive(Clone)]
pub struct SlackChannel {
    inner: Arc<Inner>,
}

struct Inner {
    client: SlackClient<Connector>,
    token: SlackApiToken,
    app_token: Option<SlackApiToken>,
    verifier: Option<SlackEventSignatureVerifier>,
    config: SlackConfig,
    /// Slack user id → (name, email), from `users.info`.
    people: Mutex<HashMap<String, Person>>,
}

#[derive(Clone, Debug, Default)]
struct Person {
    name: Option<String>,
    email: Option<String>,
}

impl SlackChannel {
    /// Reads `[channels.slack]` and the secrets; says what is missing or wrong.
    pub fn from_config(
        table: &toml::Table,
        env: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, String> {
        let config: SlackConfig = table
            .clone()
            .try_into()
            .map_err(|e| format!("[channels.slack]: {e}"))?;
        let secret = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let token = secret(BOT_TOKEN_ENV)
            .ok_or_else(|| format!("[channels.slack] needs the bot token in {BOT_TOKEN_ENV}"))?;
        let signing = secret(SIGNING_SECRET_ENV);
        let app = secret(APP_TOKEN_ENV);
        match config.mode {
            Mode::Events if signing.is_none() => {
                return Err(format!(
                    "[channels.slack] needs {SIGNING_SECRET_ENV} to check Slack's requests"
                ));
            }
            Mode::Socket if app.is_none() => {
                return Err(format!(
                    "[channels.slack] mode = \"socket\" needs the app-level token in {APP_TOKEN_ENV}"
                ));
            }
            _ => {}
        }
        if let Some(c) = &config.console_channel
            && c.trim().is_empty()
        {
            return Err("[channels.slack] console_channel is empty".into());
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let mut connector = SlackClientHyperConnector::from(https);
        if let Some(url) = &config.api_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "[channels.slack] api_url `{url}` is not an http(s) URL"
                ));
            }
            // slack-morphism appends `/<method>`; the SDKs' style ends in `/`.
            connector = connector.with_slack_api_url(url.trim_end_matches('/'));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                client: SlackClient::new(connector),
                token: SlackApiToken::new(token.into()),
                app_token: app.map(|t| SlackApiToken::new(t.into())),
                verifier: signing.map(|s| SlackEventSignatureVerifier::new(&s.into())),
                config,
                people: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn session(&self) -> SlackClientSession<'_, Connector> {
        self.inner.client.open_session(&self.inner.token)
    }

    /// Calls the Web API, waiting out 429s as Slack asks.
    async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ClientResult<T>>,
    {
        retry_rate_limited(ChannelKind::Slack, what, f, |e| match e {
            SlackClientError::RateLimitError(r) => {
                Some(r.retry_after.unwrap_or(Duration::from_secs(1)))
            }
            _ => None,
        })
        .await
    }

    /// Name and email of a Slack user (`users:read`, `users:read.email`).
    async fn person(&self, user: &str) -> Person {
        if let Some(p) = self.lock_people().get(user) {
            return p.clone();
        }
        let session = self.session();
        let req = SlackApiUsersInfoRequest::new(user.into());
        match self.call("users.info", || session.users_info(&req)).await {
            Ok(info) => {
                let profile = info.user.profile.as_ref();
                let person = Person {
                    name: profile
                        .and_then(|p| p.real_name.clone().or(p.display_name.clone()))
                        .or(info.user.real_name.clone())
                        .or(info.user.name.clone())
                        .filter(|n| !n.trim().is_empty()),
                    email: profile.and_then(|p| p.email.as_ref().map(|e| e.0.clone())),
                };
                self.lock_people().insert(user.to_owned(), person.clone());
                person
            }
            Err(e) => {
                warn!(error = %e, "cannot look up a slack user");
                Person::default()
            }
        }
    }

    fn lock_people(&self) -> std::sync::MutexGuard<'_, HashMap<String, Person>> {
        self.inner.people.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ephemeral(&self, channel: &str, user: &str, text: &str) {
        let session = self.session();
        let req = SlackApiChatPostEphemeralRequest::new(
            channel.into(),
            user.into(),
            SlackMessageContent::new().with_text(text.to_owned()),
        );
        if let Err(e) = self
            .call("chat.postEphemeral", || session.chat_post_ephemeral(&req))
            .await
        {
            warn!(error = %e, "cannot tell a slack user");
        }
    }

    /// One Events API body, from HTTP or Socket Mode. Returns the HTTP answer.
    async fn on_event(&self, body: &[u8], ingest: &Arc<dyn Ingest>) -> Response {
        let console = self.inner.config.console_channel.as_deref();
        let event = match normalize::event(body, console) {
            Ok(e) => e,
            Err(e) => return error_response(StatusCode::BAD_REQUEST, "malformed", e.to_string()),
        };
        match event {
            Event::UrlVerification { challenge } => {
                return axum::Json(json!({ "challenge": challenge })).into_response();
            }
            Event::Visitor(inbound) => self.visitor(inbound, ingest).await,
            Event::AgentReply {
                channel,
                thread_ts,
                user,
                text,
                ts,
            } => {
                self.agent_reply(&channel, &thread_ts, &user, text, &ts, ingest)
                    .await;
            }
            Event::Ignored => {}
        }
        StatusCode::OK.into_response()
    }

    async fn visitor(&self, mut inbound: Inbound, ingest: &Arc<dyn Ingest>) {
        let person = self.person(&inbound.sender.external_id).await;
        inbound.sender.name = person.name;
        inbound.sender.email = person.email;
        if let Err(e) = ingest.ingest(inbound).await {
            warn!(channel = "slack", error = %e, "message not taken");
        }
    }

    /// The staff member behind a Slack user, or an ephemeral note saying why not.
    async fn staff(
        &self,
        user: &str,
        channel: &str,
        ingest: &Arc<dyn Ingest>,
    ) -> Option<baton_model::AgentRef> {
        let person = self.person(user).await;
        let Some(email) = person.email else {
            self.ephemeral(
                channel,
                user,
                "Baton cannot see your Slack email, so it cannot tell which Baton user you are. \
                 The app needs the users:read.email scope.",
            )
            .await;
            return None;
        };
        match ingest.staff_by_email(&email).await {
            Ok(Some(agent)) => Some(agent),
            Ok(None) => {
                self.ephemeral(
                    channel,
                    user,
                    &format!(
                        "{email} is not a Baton user. Ask an admin to add you with that email."
                    ),
                )
                .await;
                None
            }
            Err(e) => {
                warn!(error = %e, "cannot look up a staff member");
                None
            }
        }
    }

    async fn agent_reply(
        &self,
        channel: &str,
        thread_ts: &str,
        user: &str,
        text: String,
        ts: &str,
        ingest: &Arc<dyn Ingest>,
    ) {
        let conversation = match ingest.linked_conversation(CONSOLE, thread_ts).await {
            Ok(Some(id)) => id,
            // A thread that is not one of Baton's posts: staff talking among themselves.
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "cannot find the conversation of a slack thread");
                return;
            }
        };
        let Some(agent) = self.staff(user, channel, ingest).await else {
            return;
        };
        let act = AgentAct::Reply {
            text,
            client_id: Some(format!("slack:{channel}:{ts}")),
        };
        if let Err(e) = ingest.agent_act(&conversation, &agent, act).await {
            self.ephemeral(channel, user, &format!("Not sent to the visitor: {e}"))
                .await;
        }
    }

    async fn on_interaction(&self, payload: &[u8], ingest: &Arc<dyn Ingest>) -> Response {
        let interaction = match normalize::interaction(payload) {
            Ok(i) => i,
            Err(e) => return error_response(StatusCode::BAD_REQUEST, "malformed", e.to_string()),
        };
        match interaction {
            Interaction::Console {
                action,
                conversation_id,
                user,
                channel,
            } => {
                let Some(agent) = self.staff(&user, &channel, ingest).await else {
                    return StatusCode::OK.into_response();
                };
                let act = match action {
                    ConsoleAction::Claim => AgentAct::Claim,
                    ConsoleAction::HandBack => AgentAct::HandBack,
                    ConsoleAction::Resolve => AgentAct::Resolve,
                };
                match ingest.agent_act(&conversation_id, &agent, act).await {
                    // The post itself follows from the event the action committed.
                    Ok(_) => {}
                    Err(Error::Refused(why)) => self.ephemeral(&channel, &user, &why).await,
                    Err(e) => {
                        warn!(error = %e, "console action failed");
                        self.ephemeral(&channel, &user, "That did not work; try again.")
                            .await;
                    }
                }
            }
            Interaction::Visitor(inbound) => self.visitor(inbound, ingest).await,
            Interaction::Ignored => {}
        }
        StatusCode::OK.into_response()
    }

    /// Checks `X-Slack-Signature` over `v0:<timestamp>:<body>`, at most 5
    /// minutes old. The error says why, for a 401.
    fn verified<'b>(
        &self,
        headers: &HeaderMap,
        body: &'b [u8],
    ) -> std::result::Result<&'b str, &'static str> {
        let Some(verifier) = &self.inner.verifier else {
            return Err("this Baton takes Slack events over Socket Mode");
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(ts), Some(signature)) = (
            header("x-slack-request-timestamp"),
            header("x-slack-signature"),
        ) else {
            return Err("missing X-Slack-Signature or X-Slack-Request-Timestamp");
        };
        let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8")?;
        verifier
            .verify(signature, text, ts)
            .map_err(|_| "wrong or stale Slack signature")?;
        Ok(text)
    }

    /// Socket Mode: one connection at a time, reopened with back-off.
    async fn socket_mode(&self, ingest: Arc<dyn Ingest>) -> Result<()> {
        let Some(app_token) = &self.inner.app_token else {
            return Ok(());
        };
        let mut backoff = Backoff::default();
        loop {
            let session = self.inner.client.open_session(app_token);
            let req = SlackApiAppsConnectionOpenRequest::new();
            let opened = self
                .call("apps.connections.open", || {
                    session.apps_connections_open(&req)
                })
                .await;
            let url = match opened {
                Ok(r) => r.url.0.to_string(),
                Err(e) => {
                    let wait = backoff.next_wait();
                    warn!(error = %e, wait_ms = wait.as_millis() as u64, "cannot open a slack socket; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            match self.socket_session(&url, &ingest, &mut backoff).await {
                Ok(()) => debug!("slack asked to reconnect"),
                Err(e) => {
                    let wait = backoff.next_wait();
                    warn!(error = %e, wait_ms = wait.as_millis() as u64, "slack socket lost; reconnecting");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn socket_session(
        &self,
        url: &str,
        ingest: &Arc<dyn Ingest>,
        backoff: &mut Backoff,
    ) -> std::result::Result<(), String> {
        use tokio_tungstenite::tungstenite::Message as Frame;
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| e.to_string())?;
        info!("slack socket mode connected");
        while let Some(frame) = ws.next().await {
            let frame = frame.map_err(|e| e.to_string())?;
            let text = match frame {
                Frame::Text(t) => t.to_string(),
                Frame::Ping(p) => {
                    let _ = ws.send(Frame::Pong(p)).await;
                    continue;
                }
                Frame::Close(_) => return Ok(()),
                _ => continue,
            };
            let Ok(envelope) = serde_json::from_str::<Value>(&text) else {
                warn!("slack sent a socket frame that is not JSON");
                continue;
            };
            // Acknowledge first: Slack redelivers what is not acknowledged.
            if let Some(id) = envelope.get("envelope_id").and_then(Value::as_str) {
                ws.send(Frame::text(json!({ "envelope_id": id }).to_string()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let payload = envelope.get("payload").map(Value::to_string);
            match (envelope.get("type").and_then(Value::as_str), payload) {
                (Some("hello"), _) => backoff.reset(),
                (Some("disconnect"), _) => return Ok(()),
                (Some("events_api"), Some(p)) => {
                    let answer = self.on_event(p.as_bytes(), ingest).await;
                    if !answer.status().is_success() {
                        warn!(status = %answer.status(), "slack socket event refused");
                    }
                }
                (Some("interactive"), Some(p)) => {
                    let _ = self.on_interaction(p.as_bytes(), ingest).await;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn visitor_blocks(out: &Outbound<'_>, text: &str) -> Option<Vec<SlackBlock>> {
        let buttons: Vec<Value> = out
            .message
            .actions
            .iter()
            .enumerate()
            .map(|(n, a)| match (a.kind, &a.url) {
                (ActionKind::Link, Some(url)) => json!({
                    "type": "button", "action_id": format!("baton_link:{n}"),
                    "text": {"type": "plain_text", "text": a.label}, "url": url,
                }),
                _ => json!({
                    "type": "button", "action_id": format!("{}{}", normalize::VISITOR_ACTION, a.id),
                    "text": {"type": "plain_text", "text": a.label}, "value": a.id,
                }),
            })
            .collect();
        if buttons.is_empty() {
            return None;
        }
        serde_json::from_value(json!([
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "block_id": "baton_buttons", "elements": buttons},
        ]))
        .ok()
    }
}

/// Escapes what Slack's mrkdwn treats as markup (`&`, `<`, `>`), so visitor
/// text cannot ping `@channel` or forge links.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[derive(Clone)]
struct Hooks {
    channel: SlackChannel,
    ingest: Arc<dyn Ingest>,
}

async fn events(State(h): State<Hooks>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let text = match h.channel.verified(&headers, &body) {
        Ok(t) => t,
        Err(why) => return error_response(StatusCode::UNAUTHORIZED, "unauthorized", why),
    };
    h.channel.on_event(text.as_bytes(), &h.ingest).await
}

async fn interactivity(
    State(h): State<Hooks>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(why) = h.channel.verified(&headers, &body) {
        return error_response(StatusCode::UNAUTHORIZED, "unauthorized", why);
    }
    let payload = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned());
    let Some(payload) = payload else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "malformed",
            "the form has no `payload` field",
        );
    };
    h.channel
        .on_interaction(payload.as_bytes(), &h.ingest)
        .await
}

#[async_trait]
impl Channel for SlackChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Slack
    }

    fn normalize(&self, raw: &RawInbound) -> Result<Vec<Inbound>> {
        let console = self.inner.config.console_channel.as_deref();
        Ok(match normalize::event(&raw.body, console)? {
            Event::Visitor(i) => vec![i],
            _ => vec![],
        })
    }

    async fn deliver(&self, out: Outbound<'_>) -> Result<Delivered> {
        let channel = out.thread_key.ok_or_else(|| Error::Rejected {
            channel: ChannelKind::Slack,
            reason: "the conversation has no slack channel".into(),
        })?;
        let m = out.message;
        let named = self.inner.config.agent_names;
        let mut text = match (&m.sender, &m.author) {
            (SenderKind::Agent, Some(a)) if !named => format!("{}: {}", a.name, m.text),
            _ => m.text.clone(),
        };
        text = escape(&text);
        for a in &m.attachments {
            match &a.url {
                Some(url) => text.push_str(&format!("\n:paperclip: <{url}|{}>", escape(&a.name))),
                None => text.push_str(&format!("\n:paperclip: {}", escape(&a.name))),
            }
        }
        let mut content = SlackMessageContent::new().with_text(text.clone());
        if let Some(blocks) = Self::visitor_blocks(&out, &text) {
            content = content.with_blocks(blocks);
        }
        let mut req = SlackApiChatPostMessageRequest::new(channel.into(), content);
        if let (SenderKind::Agent, Some(a), true) = (&m.sender, &m.author, named) {
            req = req.with_username(a.name.clone());
        }
        let session = self.session();
        let sent = self
            .call("chat.postMessage", || session.chat_post_message(&req))
            .await?;
        Ok(Delivered::Sent {
            platform_id: Some(format!("{}:{}", sent.channel, sent.ts)),
        })
    }

    fn routes(&self, ingest: Arc<dyn Ingest>) -> Option<axum::Router> {
        if self.inner.config.mode != Mode::Events {
            return None;
        }
        Some(
            axum::Router::new()
                .route("/events", post(events))
                .route("/interactivity", post(interactivity))
                .with_state(Hooks {
                    channel: self.clone(),
                    ingest,
                }),
        )
    }

    async fn run(&self, ingest: Arc<dyn Ingest>) -> Result<()> {
        if self.inner.config.mode == Mode::Socket {
            self.socket_mode(ingest).await?;
        }
        Ok(())
    }

    fn observes_events(&self) -> bool {
        self.inner.config.console_channel.is_some()
    }

    async fn observe(&self, event: &EventEnvelope, ingest: Arc<dyn Ingest>) -> Result<()> {
        console::follow(self, event, &ingest).await
    }
}
