//! A fake Slack: the Web API (`POST /api/<method>`, JSON or form-encoded, as
//! slack-morphism and the official SDKs send) and a Socket Mode WebSocket
//! (`apps.connections.open` hands out its `ws://` URL). It records every
//! call and can answer the next `chat.postMessage` with 429 and
//! `Retry-After`. Requests *to* Baton are signed with the official
//! `slack_sdk` from PyPI ([`sign_with_slack_sdk`]) or with [`sign`].

use super::spawn_router;
use crate::eventually;
use anyhow::{Context, Result, bail};
use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

#[derive(Default)]
struct Inner {
    next_ts: u64,
    calls: Vec<(String, Value)>,
    users: HashMap<String, (String, String)>,
    throttle_next_post: u32,
    acks: Vec<String>,
    socket_base: String,
}

/// The fake. Cheap to clone.
#[derive(Clone)]
pub struct FakeSlack {
    /// The Web API base, ending in `/api/` (what `api_url` takes).
    pub api: String,
    inner: Arc<Mutex<Inner>>,
    envelopes: broadcast::Sender<String>,
}

type Shared = (Arc<Mutex<Inner>>, broadcast::Sender<String>);

impl FakeSlack {
    pub async fn start() -> Result<Self> {
        let inner = Arc::new(Mutex::new(Inner {
            next_ts: 1,
            ..Default::default()
        }));
        let (envelopes, _) = broadcast::channel(64);
        let app = Router::new()
            .route("/api/{method}", post(web_api).get(web_api))
            .route("/socket", any(socket))
            .with_state((inner.clone(), envelopes.clone()));
        let base = spawn_router(app).await?;
        inner.lock().unwrap_or_else(|p| p.into_inner()).socket_base =
            base.replacen("http://", "ws://", 1);
        Ok(Self {
            api: format!("{base}/api/"),
            inner,
            envelopes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A workspace member `users.info` knows.
    pub fn add_user(&self, id: &str, name: &str, email: &str) {
        self.lock()
            .users
            .insert(id.into(), (name.into(), email.into()));
    }

    pub fn throttle_next_posts(&self, n: u32) {
        self.lock().throttle_next_post = n;
    }

    pub fn calls(&self) -> Vec<(String, Value)> {
        self.lock().calls.clone()
    }

    /// Parameters of the calls to one method, in order.
    pub fn calls_to(&self, method: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|(m, _)| m == method)
            .map(|(_, p)| p)
            .collect()
    }

    /// Waits until a call to `method` matches.
    pub async fn wait_call(
        &self,
        method: &str,
        secs: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        eventually(
            secs,
            || self.calls_to(method).into_iter().find(|p| pred(p)),
            || {
                format!(
                    "no matching {method} within {secs}s; calls: {:#?}",
                    self.calls()
                )
            },
        )
        .await
    }

    /// Sends an envelope to every connected Socket Mode client.
    pub fn push_envelope(&self, envelope: Value) -> Result<()> {
        self.envelopes
            .send(envelope.to_string())
            .map(|_| ())
            .map_err(|_| anyhow::anyhow!("no Socket Mode client is connected"))
    }

    pub fn socket_clients(&self) -> usize {
        self.envelopes.receiver_count()
    }

    pub fn acks(&self) -> Vec<String> {
        self.lock().acks.clone()
    }
}

fn parameters(headers: &HeaderMap, body: &[u8]) -> Value {
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return serde_json::from_slice(body).unwrap_or(json!({}));
    }
    let mut out = serde_json::Map::new();
    for (k, v) in form_urlencoded::parse(body) {
        let parsed = serde_json::from_str(&v).unwrap_or_else(|_| json!(v));
        out.insert(k.into_owned(), parsed);
    }
    Value::Object(out)
}

async fn web_api(
    State((inner, _)): State<Shared>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // As Slack does: Socket Mode takes the app-level token, the rest a bot token.
    let wanted = if method == "apps.connections.open" {
        "Bearer xapp-"
    } else {
        "Bearer xox"
    };
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(wanted));
    if !authorized {
        return Json(json!({"ok": false, "error": "not_authed"})).into_response();
    }
    let mut params = parameters(&headers, &body);
    // GET methods (users.info) take their parameters in the query string.
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        params[k.as_ref()] = json!(v);
    }
    let mut s = inner.lock().unwrap_or_else(|p| p.into_inner());
    if method == "chat.postMessage" && s.throttle_next_post > 0 {
        s.throttle_next_post -= 1;
        s.calls.push(("chat.postMessage:429".into(), params));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
    }
    s.calls.push((method.clone(), params.clone()));
    let channel = params["channel"].clone();
    let result = match method.as_str() {
        "chat.postMessage" => {
            s.next_ts += 1;
            let ts = format!("1763712{:03}.000100", s.next_ts);
            json!({"ok": true, "channel": channel, "ts": ts,
                   "message": {"type": "message", "ts": ts, "text": params["text"], "bot_id": "B0BATONBOT"}})
        }
        "chat.update" => json!({"ok": true, "channel": channel, "ts": params["ts"],
                                "text": params["text"], "message": {"text": params["text"]}}),
        "chat.postEphemeral" => json!({"ok": true, "message_ts": "1763712999.000100"}),
        "users.info" => {
            let id = params["user"].as_str().unwrap_or_default();
            match s.users.get(id) {
                Some((name, email)) => json!({"ok": true, "user": {
                    "id": id, "name": name.to_lowercase(), "real_name": name,
                    "profile": {"real_name": name, "display_name": name, "email": email}
                }}),
                None => json!({"ok": false, "error": "user_not_found"}),
            }
        }
        "apps.connections.open" => {
            json!({"ok": true, "url": format!("{}/socket", s.socket_base)})
        }
        "auth.test" => json!({"ok": true, "user_id": "U0BATONBOT", "bot_id": "B0BATONBOT"}),
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    Json(result).into_response()
}

async fn socket(State((inner, envelopes)): State<Shared>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session(socket, inner, envelopes.subscribe()))
}

async fn session(
    mut socket: WebSocket,
    inner: Arc<Mutex<Inner>>,
    mut envelopes: broadcast::Receiver<String>,
) {
    let hello = json!({"type": "hello", "num_connections": 1,
                       "connection_info": {"app_id": "A0APP00001"}});
    if socket.send(Frame::text(hello.to_string())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            out = envelopes.recv() => match out {
                Ok(text) => if socket.send(Frame::text(text)).await.is_err() { return },
                Err(_) => return,
            },
            frame = socket.recv() => match frame {
                Some(Ok(Frame::Text(t))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&t)
                        && let Some(id) = v["envelope_id"].as_str()
                    {
                        inner.lock().unwrap_or_else(|p| p.into_inner()).acks.push(id.to_owned());
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

/// `v0=` HMAC-SHA256 of `v0:<ts>:<body>`, as Slack signs (our own code).
pub fn sign(secret: &str, ts: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// The same signature, made by the official `slack_sdk` from PyPI
/// (`SignatureVerifier.generate_signature`). The interpreter comes from
/// `BATON_TEST_PYTHON` (set by `cargo xtask test`), else `python3`.
pub fn sign_with_slack_sdk(secret: &str, ts: i64, body: &str) -> Result<String> {
    let python = std::env::var("BATON_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = "import sys\n\
                  from slack_sdk.signature import SignatureVerifier\n\
                  secret, ts = sys.argv[1], sys.argv[2]\n\
                  body = sys.stdin.read()\n\
                  print(SignatureVerifier(secret).generate_signature(timestamp=ts, body=body))\n";
    use std::io::Write;
    let mut child = std::process::Command::new(&python)
        .args(["-c", script, secret, &ts.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {python}; `cargo xtask test` sets up slack_sdk"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(body.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "slack_sdk could not sign (is it installed? `cargo xtask test` installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}
