//! A fake Telegram Bot API: the real teloxide client talks to it over HTTP
//! (`POST /bot<token>/<method>`, JSON in, `{"ok":true,"result":...}` out).
//!
//! It keeps a queue of updates for `getUpdates` (honouring `offset` and
//! `timeout`), records every call, and can answer the next `sendMessage`
//! with 429 and `retry_after`, as Telegram's flood control does.

use super::spawn_router;
use crate::eventually;
use anyhow::Result;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub const BOT_ID: u64 = 7_000_000_001;
pub const BOT_USERNAME: &str = "AcmeSupportBot";

#[derive(Default)]
struct State_ {
    next_update: u64,
    next_message: i64,
    pending: Vec<Value>,
    calls: Vec<(String, Value)>,
    throttle_next_send: u32,
    /// Every `sendMessage` answers this status while it is set.
    failing: Option<u16>,
}

/// The fake server. Cheap to clone.
#[derive(Clone)]
pub struct FakeTelegram {
    pub base: String,
    pub token: String,
    state: Arc<Mutex<State_>>,
    wake: Arc<Notify>,
}

impl FakeTelegram {
    pub async fn start(token: &str) -> Result<Self> {
        let state = Arc::new(Mutex::new(State_ {
            next_update: 1000,
            next_message: 1,
            ..Default::default()
        }));
        let wake = Arc::new(Notify::new());
        let app = Router::new()
            .route("/{bot}/{method}", post(call))
            .with_state((state.clone(), wake.clone(), format!("bot{token}")));
        let base = spawn_router(app).await?;
        Ok(Self {
            base,
            token: token.into(),
            state,
            wake,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an update (everything but `update_id`) and returns its id.
    pub fn push(&self, mut update: Value) -> u64 {
        let id = {
            let mut s = self.lock();
            s.next_update += 1;
            let id = s.next_update;
            update["update_id"] = json!(id);
            s.pending.push(update);
            id
        };
        self.wake.notify_waiters();
        id
    }

    /// Queues the same update again, as Telegram does when it was not confirmed.
    pub fn push_again(&self, update: Value) {
        self.lock().pending.push(update);
        self.wake.notify_waiters();
    }

    /// A visitor's text message in a private chat; returns the whole update.
    pub fn private_text(&self, user: u64, name: &str, text: &str) -> Value {
        let message_id = {
            let mut s = self.lock();
            s.next_message += 1;
            s.next_message
        };
        let update = json!({
            "message": {
                "message_id": message_id,
                "from": {"id": user, "is_bot": false, "first_name": name},
                "chat": {"id": user, "first_name": name, "type": "private"},
                "date": 1_763_712_000,
                "text": text,
            }
        });
        let id = self.push(update.clone());
        let mut update = update;
        update["update_id"] = json!(id);
        update
    }

    /// The visitor presses an inline-keyboard button.
    pub fn press(&self, user: u64, name: &str, data: &str) -> u64 {
        self.push(json!({
            "callback_query": {
                "id": format!("cb-{user}-{data}"),
                "from": {"id": user, "is_bot": false, "first_name": name},
                "message": {
                    "message_id": 1,
                    "from": {"id": BOT_ID, "is_bot": true, "first_name": "Acme Support", "username": BOT_USERNAME},
                    "chat": {"id": user, "first_name": name, "type": "private"},
                    "date": 1_763_712_000,
                    "text": "…"
                },
                "chat_instance": "1",
                "data": data,
            }
        }))
    }

    /// Every `sendMessage` answers 500 (Telegram is down) until turned off;
    /// the calls are recorded as `sendmessage:500`.
    pub fn fail_sends(&self, on: bool) {
        self.lock().failing = on.then_some(500);
    }

    /// Every `sendMessage` answers 400 "chat not found" until turned off;
    /// the calls are recorded as `sendmessage:400`.
    pub fn refuse_sends(&self, on: bool) {
        self.lock().failing = on.then_some(400);
    }

    /// The next `sendMessage` calls get 429 with `retry_after: 1`.
    pub fn throttle_next_sends(&self, n: u32) {
        self.lock().throttle_next_send = n;
    }

    /// Every call so far, as (method in lower case, parameters).
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.lock().calls.clone()
    }

    /// Parameters of each `sendMessage` to a chat, in order.
    pub fn sent_to(&self, chat: u64) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|(m, p)| m == "sendmessage" && p["chat_id"] == json!(chat))
            .map(|(_, p)| p)
            .collect()
    }

    /// Waits until a message to `chat` matches.
    pub async fn wait_sent(
        &self,
        chat: u64,
        secs: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        eventually(
            secs,
            || self.sent_to(chat).into_iter().find(|m| pred(m)),
            || {
                format!(
                    "no matching message to chat {chat} within {secs}s; sent: {:?}",
                    self.sent_to(chat)
                )
            },
        )
        .await
    }

    /// Waits until a method was called.
    pub async fn wait_call(&self, method: &str, secs: u64) -> Result<Value> {
        let method = method.to_lowercase();
        eventually(
            secs,
            || {
                self.calls()
                    .into_iter()
                    .find(|(m, _)| *m == method)
                    .map(|(_, p)| p)
            },
            || format!("{method} was not called within {secs}s"),
        )
        .await
    }
}

type Shared = (Arc<Mutex<State_>>, Arc<Notify>, String);

/// teloxide sends JSON, or multipart/form-data for methods that may carry a
/// file (`setWebhook`); both become one JSON object of parameters.
fn parameters(headers: &axum::http::HeaderMap, body: &[u8]) -> Value {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
    else {
        return serde_json::from_slice(body).unwrap_or(json!({}));
    };
    let text = String::from_utf8_lossy(body);
    let mut out = serde_json::Map::new();
    for part in text.split(&format!("--{}", boundary.trim_matches('"'))) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        let value = value.trim_end_matches("\r\n");
        // Telegram's parameters are JSON values or plain strings.
        let parsed = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        out.insert(name.to_owned(), parsed);
    }
    Value::Object(out)
}

async fn call(
    State((state, wake, bot)): State<Shared>,
    Path((who, method)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, Json<Value>) {
    use axum::http::StatusCode;
    if who != bot {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
        );
    }
    let params = parameters(&headers, &body);
    let method = method.to_lowercase();
    state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .calls
        .push((method.clone(), params.clone()));
    let ok = |result: Value| (StatusCode::OK, Json(json!({"ok": true, "result": result})));
    match method.as_str() {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Acme Support",
            "username": BOT_USERNAME, "can_join_groups": true,
            "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false
        })),
        "deletewebhook" | "setwebhook" | "answercallbackquery" => ok(json!(true)),
        "getupdates" => {
            let offset = params["offset"].as_u64().unwrap_or(0);
            let timeout = params["timeout"].as_u64().unwrap_or(0).min(5);
            let deadline = Instant::now() + Duration::from_secs(timeout);
            loop {
                let notified = wake.notified();
                let ready: Vec<Value> = {
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    // Confirmed updates are forgotten, as Telegram does.
                    s.pending
                        .retain(|u| u["update_id"].as_u64().unwrap_or(0) >= offset);
                    s.pending.clone()
                };
                if !ready.is_empty() || Instant::now() >= deadline {
                    return ok(json!(ready));
                }
                let _ = tokio::time::timeout_at(deadline.into(), notified).await;
            }
        }
        "sendmessage" => {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(code) = s.failing {
                if let Some(last) = s.calls.last_mut() {
                    last.0 = format!("sendmessage:{code}");
                }
                let description = if code == 400 {
                    "Bad Request: chat not found"
                } else {
                    "Internal Server Error"
                };
                return (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    Json(json!({"ok": false, "error_code": code, "description": description})),
                );
            }
            if s.throttle_next_send > 0 {
                s.throttle_next_send -= 1;
                if let Some(last) = s.calls.last_mut() {
                    last.0 = "sendmessage:429".into();
                }
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({
                        "ok": false, "error_code": 429,
                        "description": "Too Many Requests: retry after 1",
                        "parameters": {"retry_after": 1}
                    })),
                );
            }
            s.next_message += 1;
            let chat = params["chat_id"].clone();
            ok(json!({
                "message_id": s.next_message,
                "from": {"id": BOT_ID, "is_bot": true, "first_name": "Acme Support", "username": BOT_USERNAME},
                "chat": {"id": chat, "first_name": "Visitor", "type": "private"},
                "date": 1_763_712_000,
                "text": params["text"],
            }))
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(
                json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"}),
            ),
        ),
    }
}
