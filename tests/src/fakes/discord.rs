//! A fake Discord: the REST API under `/api/v10/` (what serenity calls
//! through `HttpBuilder::proxy`) and a gateway WebSocket whose `ws://` URL
//! `GET /api/v10/gateway` hands out.
//!
//! The gateway speaks Discord's opcodes: HELLO on connect, READY after
//! IDENTIFY, RESUMED after RESUME, a heartbeat ACK for each heartbeat, and
//! dispatches (`op` 0 with a sequence number) of the events a test pushes.
//! Events are kept in order and each is sent once across connections, so a
//! test can drop the connection (serenity resumes) and go on. It records
//! every REST call and can answer the next message sends with 429.

use super::spawn_router;
use crate::eventually;
use anyhow::Result;
use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, broadcast};

pub const BOT_ID: u64 = 1_300_000_000_000_000_001;
pub const APPLICATION_ID: u64 = 1_300_000_000_000_000_000;
pub const GUILD_ID: u64 = 1_300_000_000_000_000_050;

#[derive(Default)]
struct Inner {
    token: String,
    ws_url: String,
    next_id: u64,
    /// Every event pushed, in order; `sent` of them went out already.
    events: Vec<Value>,
    sent: usize,
    seq: u64,
    identifies: Vec<Value>,
    resumes: u32,
    calls: Vec<(String, String, Value)>,
    throttle_next_send: u32,
}

/// The fake. Cheap to clone.
#[derive(Clone)]
pub struct FakeDiscord {
    /// What `api_url` takes: REST calls go to `<base>/api/v10/…`.
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    wake: Arc<Notify>,
    drop_all: broadcast::Sender<()>,
}

type Shared = (Arc<Mutex<Inner>>, Arc<Notify>, broadcast::Sender<()>);

impl FakeDiscord {
    pub async fn start(token: &str) -> Result<Self> {
        let inner = Arc::new(Mutex::new(Inner {
            token: token.into(),
            next_id: 1_300_000_000_000_010_000,
            ..Default::default()
        }));
        let wake = Arc::new(Notify::new());
        let (drop_all, _) = broadcast::channel(4);
        let app = Router::new()
            .route("/api/v10/gateway", get(gateway_url))
            .route("/api/v10/gateway/bot", get(gateway_url))
            .route("/api/v10/{*path}", any(rest))
            .route("/gateway", get(gateway))
            .with_state((inner.clone(), wake.clone(), drop_all.clone()));
        let base = spawn_router(app).await?;
        inner.lock().unwrap_or_else(|p| p.into_inner()).ws_url =
            format!("{}/gateway", base.replacen("http://", "ws://", 1));
        Ok(Self {
            base,
            inner,
            wake,
            drop_all,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_id(&self) -> u64 {
        let mut s = self.lock();
        s.next_id += 1;
        s.next_id
    }

    /// Queues a gateway dispatch (`t`, `d`).
    pub fn push(&self, t: &str, d: Value) {
        self.lock().events.push(json!({"t": t, "d": d}));
        self.wake.notify_waiters();
    }

    /// A person's text message in a DM channel; returns the message object.
    pub fn dm(&self, channel: u64, user: u64, name: &str, text: &str) -> Value {
        let d = message_object(self.next_id(), channel, None, &person(user, name), text);
        self.push("MESSAGE_CREATE", d.clone());
        d
    }

    /// A person's text message in a guild channel (the support channel or a thread).
    pub fn guild_message(&self, channel: u64, user: u64, name: &str, text: &str) -> Value {
        let d = message_object(
            self.next_id(),
            channel,
            Some(GUILD_ID),
            &person(user, name),
            text,
        );
        self.push("MESSAGE_CREATE", d.clone());
        d
    }

    /// A message by the bot itself, as the gateway echoes what it sent.
    pub fn bot_message(&self, channel: u64, text: &str) {
        let d = message_object(self.next_id(), channel, None, &bot_user(), text);
        self.push("MESSAGE_CREATE", d);
    }

    /// The person presses a button on one of the bot's messages in `channel`.
    pub fn press(&self, channel: u64, in_guild: bool, user: u64, name: &str, custom_id: &str) {
        let id = self.next_id();
        let mut d = json!({
            "version": 1,
            "type": 3,
            "token": format!("interaction-token-{id}"),
            "id": id.to_string(),
            "application_id": APPLICATION_ID.to_string(),
            "channel_id": channel.to_string(),
            "locale": "en-GB",
            "entitlements": [],
            "attachment_size_limit": 10_485_760,
            "app_permissions": "1126089457213441",
            "authorizing_integration_owners": {"0": APPLICATION_ID.to_string()},
            "data": {"custom_id": custom_id, "component_type": 2},
            "message": message_object(id - 1, channel, None, &bot_user(), "…"),
        });
        if in_guild {
            d["guild_id"] = json!(GUILD_ID.to_string());
            d["context"] = json!(0);
            d["member"] = json!({
                "user": person(user, name), "roles": [], "joined_at": "2025-03-02T17:40:11.512000+00:00",
                "deaf": false, "mute": false, "flags": 0, "pending": false,
                "permissions": "2248473465835073"
            });
        } else {
            d["context"] = json!(1);
            d["user"] = person(user, name);
        }
        self.push("INTERACTION_CREATE", d);
    }

    /// Closes every gateway connection (as Discord does when it restarts a
    /// node); serenity reconnects and resumes.
    pub fn drop_connections(&self) {
        let _ = self.drop_all.send(());
    }

    /// The next message sends get 429 with `retry_after`.
    pub fn throttle_next_sends(&self, n: u32) {
        self.lock().throttle_next_send = n;
    }

    /// IDENTIFY payloads received so far.
    pub fn identifies(&self) -> Vec<Value> {
        self.lock().identifies.clone()
    }

    pub fn resumes(&self) -> u32 {
        self.lock().resumes
    }

    /// Every REST call so far: (method, path under /api/v10/, JSON body).
    pub fn calls(&self) -> Vec<(String, String, Value)> {
        self.lock().calls.clone()
    }

    /// Bodies of the messages created in a channel, in order.
    pub fn sent_to(&self, channel: u64) -> Vec<Value> {
        let path = format!("channels/{channel}/messages");
        self.calls()
            .into_iter()
            .filter(|(m, p, _)| m == "POST" && *p == path)
            .map(|(_, _, b)| b)
            .collect()
    }

    /// Waits until a message to `channel` matches.
    pub async fn wait_sent(
        &self,
        channel: u64,
        secs: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        self.wait_sent_after(channel, 0, secs, pred).await
    }

    /// Waits until a message to `channel`, after the first `n`, matches.
    pub async fn wait_sent_after(
        &self,
        channel: u64,
        n: usize,
        secs: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        eventually(
            secs,
            || self.sent_to(channel).into_iter().skip(n).find(|m| pred(m)),
            || {
                let sent = self.sent_to(channel);
                format!(
                    "no matching message to channel {channel} after the first {n} within {secs}s; sent: {:?}",
                    &sent[n.min(sent.len())..]
                )
            },
        )
        .await
    }

    /// Waits until a REST call's path ends with `suffix`; returns its body.
    pub async fn wait_call(&self, suffix: &str, secs: u64) -> Result<Value> {
        eventually(
            secs,
            || {
                self.calls()
                    .into_iter()
                    .find(|(_, p, _)| p.ends_with(suffix))
                    .map(|(_, _, b)| b)
            },
            || {
                format!(
                    "no call to …{suffix} within {secs}s; calls: {:?}",
                    self.calls()
                )
            },
        )
        .await
    }

    /// Waits until the gateway session is ready (IDENTIFY answered).
    pub async fn wait_identified(&self, secs: u64) -> Result<Value> {
        eventually(
            secs,
            || self.identifies().into_iter().next(),
            || format!("nobody identified on the gateway within {secs}s"),
        )
        .await
    }
}

fn bot_user() -> Value {
    json!({"id": BOT_ID.to_string(), "username": "Acme Support", "discriminator": "4821",
           "global_name": null, "avatar": null, "bot": true})
}

fn person(id: u64, name: &str) -> Value {
    json!({"id": id.to_string(), "username": name.to_lowercase(), "global_name": name,
           "discriminator": "0", "avatar": null, "public_flags": 0})
}

/// A message object as the gateway and REST API carry it.
fn message_object(id: u64, channel: u64, guild: Option<u64>, author: &Value, text: &str) -> Value {
    let mut m = json!({
        "type": 0, "tts": false, "pinned": false, "mention_everyone": false,
        "timestamp": "2026-11-21T09:12:44.120000+00:00", "edited_timestamp": null,
        "mentions": [], "mention_roles": [], "embeds": [], "attachments": [], "components": [],
        "flags": 0, "id": id.to_string(), "channel_id": channel.to_string(),
        "author": author, "content": text,
    });
    if let Some(g) = guild {
        m["guild_id"] = json!(g.to_string());
        m["member"] = json!({"roles": [], "joined_at": "2025-03-02T17:40:11.512000+00:00",
                              "deaf": false, "mute": false, "flags": 0, "pending": false});
    }
    m
}

async fn gateway_url(State((inner, _, _)): State<Shared>, headers: HeaderMap) -> Response {
    let s = inner.lock().unwrap_or_else(|p| p.into_inner());
    if !authorized(&headers, &s.token) {
        return unauthorized();
    }
    Json(json!({"url": s.ws_url, "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999,
                                        "reset_after": 14_400_000, "max_concurrency": 1}}))
    .into_response()
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bot {token}"))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "401: Unauthorized", "code": 0})),
    )
        .into_response()
}

async fn rest(
    State((inner, _, _)): State<Shared>,
    method: Method,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut s = inner.lock().unwrap_or_else(|p| p.into_inner());
    let interaction_callback = path.starts_with("interactions/");
    // Interaction callbacks carry the interaction's token in the path, not the bot's.
    if !interaction_callback && !authorized(&headers, &s.token) {
        return unauthorized();
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.calls
        .push((method.to_string(), path.clone(), body.clone()));
    let parts: Vec<&str> = path.split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["channels", channel, "messages"]) => {
            if s.throttle_next_send > 0 {
                s.throttle_next_send -= 1;
                if let Some(last) = s.calls.last_mut() {
                    last.0 = "POST:429".into();
                }
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "0.5"), ("x-ratelimit-scope", "user")],
                    Json(json!({"message": "You are being rate limited.",
                                "retry_after": 0.5, "global": false})),
                )
                    .into_response();
            }
            s.next_id += 1;
            let channel = channel.parse().unwrap_or(0);
            let mut m = message_object(s.next_id, channel, None, &bot_user(), "");
            m["content"] = body["content"].clone();
            m["components"] = body.get("components").cloned().unwrap_or(json!([]));
            Json(m).into_response()
        }
        ("POST", ["channels", channel, "messages", message, "threads"]) => Json(json!({
            "id": message, "type": 11, "guild_id": GUILD_ID.to_string(),
            "parent_id": channel, "owner_id": BOT_ID.to_string(),
            "name": body["name"], "last_message_id": null, "rate_limit_per_user": 0,
            "message_count": 0, "member_count": 1, "flags": 0, "total_message_sent": 0,
            "thread_metadata": {"archived": false, "auto_archive_duration": 1440,
                                 "archive_timestamp": "2026-11-21T09:15:03.440000+00:00",
                                 "locked": false, "create_timestamp": "2026-11-21T09:15:03.440000+00:00"},
            "member": {"user_id": BOT_ID.to_string(), "join_timestamp": "2026-11-21T09:15:03.440000+00:00",
                        "id": message, "flags": 1}
        }))
        .into_response(),
        ("POST", ["interactions", _, _, "callback"]) => StatusCode::NO_CONTENT.into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "404: Not Found", "code": 0})),
        )
            .into_response(),
    }
}

async fn gateway(State(shared): State<Shared>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session(socket, shared))
}

/// One gateway connection.
async fn session(mut socket: WebSocket, (inner, wake, drop_all): Shared) {
    let mut dropped = drop_all.subscribe();
    let send = |v: Value| Frame::text(v.to_string());
    let hello = json!({"op": 10, "s": null, "t": null, "d": {"heartbeat_interval": 41_250}});
    if socket.send(send(hello)).await.is_err() {
        return;
    }
    let mut ready = false;
    loop {
        // Dispatch what is waiting, once the session is ready.
        let notified = wake.notified();
        if ready {
            let out: Vec<Value> = {
                let mut s = inner.lock().unwrap_or_else(|p| p.into_inner());
                let fresh: Vec<Value> = s.events[s.sent..].to_vec();
                s.sent = s.events.len();
                fresh
                    .into_iter()
                    .map(|e| {
                        s.seq += 1;
                        json!({"op": 0, "s": s.seq, "t": e["t"], "d": e["d"]})
                    })
                    .collect()
            };
            for frame in out {
                if socket.send(send(frame)).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            _ = notified => {}
            _ = dropped.recv() => {
                let close = CloseFrame { code: 4000, reason: "Unknown error".into() };
                let _ = socket.send(Frame::Close(Some(close))).await;
                return;
            }
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(Frame::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    _ => return,
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                let reply = {
                    let mut s = inner.lock().unwrap_or_else(|p| p.into_inner());
                    match v["op"].as_u64() {
                        Some(1) => Some(json!({"op": 11, "s": null, "t": null, "d": null})),
                        // Discord takes the token bare or with serenity's "Bot " prefix.
                        Some(2) if v["d"]["token"].as_str().map(|t| t.trim_start_matches("Bot ")) != Some(s.token.as_str()) => None,
                        Some(2) => {
                            s.identifies.push(v["d"].clone());
                            s.seq += 1;
                            ready = true;
                            Some(json!({"op": 0, "s": s.seq, "t": "READY", "d": {
                                "v": 10,
                                "user": {"id": BOT_ID.to_string(), "username": "Acme Support",
                                         "discriminator": "4821", "global_name": null,
                                         "avatar": null, "bot": true, "verified": true,
                                         "mfa_enabled": false, "flags": 0},
                                "guilds": [{"id": GUILD_ID.to_string(), "unavailable": true}],
                                "session_id": "fake-session",
                                "resume_gateway_url": s.ws_url,
                                "shard": [0, 1],
                                "application": {"id": APPLICATION_ID.to_string(), "flags": 8_953_856},
                            }}))
                        }
                        Some(6) => {
                            s.resumes += 1;
                            s.seq += 1;
                            ready = true;
                            Some(json!({"op": 0, "s": s.seq, "t": "RESUMED", "d": null}))
                        }
                        _ => None,
                    }
                };
                if v["op"] == 2 && !ready {
                    // A wrong token: Discord closes with 4004.
                    let close = CloseFrame { code: 4004, reason: "Authentication failed.".into() };
                    let _ = socket.send(Frame::Close(Some(close))).await;
                    return;
                }
                if let Some(r) = reply
                    && socket.send(send(r)).await.is_err()
                {
                    return;
                }
            }
        }
    }
}
