//! The inbox's live event stream (WebSocket or server-sent events) and the
//! widget's status frames.

use crate::AppState;
use crate::auth::{Credential, SESSION_COOKIE, Staff, cookie};
use crate::error::{ApiError, ApiResult};
use axum::extract::ws::{
    CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade, close_code,
};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use baton_model::EventKind;
use baton_store::StoredEvent;
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

/// Whether a staff member's stream carries this event.
fn visible(state: &AppState, event: &StoredEvent) -> bool {
    let conv = &event.envelope.data.conversation;
    // Transitions are always shown (a conversation leaving the inbox must be
    // seen leaving); bot chatter only with monitoring on.
    let is_transition = event.envelope.kind != EventKind::MessageCreated
        && event.envelope.kind != EventKind::Started;
    is_transition || state.runtime().visible_to_staff(conv)
}

/// `GET /api/v1/events`: a WebSocket, or `text/event-stream` when asked with that `Accept`.
pub async fn stream(State(state): State<AppState>, req: Request) -> ApiResult<Response> {
    let (mut parts, _body) = req.into_parts();
    let wants_ws = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if wants_ws
        && cookie(&parts.headers, SESSION_COOKIE).is_some()
        && parts.headers.get(header::AUTHORIZATION).is_none()
    {
        // A cookie-authenticated WebSocket must come from our own pages:
        // browsers send cookies on cross-site upgrades too.
        crate::auth::check_origin(&parts.headers, state.public_origin())
            .map_err(|_| ApiError::forbidden("cross-origin WebSocket refused"))?;
    }
    let staff = Staff::from_request_parts(&mut parts, &state).await?;
    let rx = state.runtime().bus().subscribe();
    if wants_ws {
        let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        // The inbox sends nothing but pings and closes; a big frame is abuse.
        return Ok(upgrade
            .max_message_size(STAFF_FRAME_LIMIT)
            .max_frame_size(STAFF_FRAME_LIMIT)
            .read_buffer_size(crate::WS_BUFFER)
            .write_buffer_size(crate::WS_BUFFER)
            .on_upgrade(move |socket| staff_socket(state, staff, rx, socket))
            .into_response());
    }
    let wants_sse = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !wants_sse {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "open a WebSocket, or ask with `Accept: text/event-stream`",
        ));
    }
    let (heartbeat, ended) = Heartbeat::start(&state, staff);
    let gauge = Arc::new((state.metrics().ws_open(), heartbeat));
    let events = stream::unfold(
        (rx, state, gauge, ended),
        |(mut rx, state, gauge, mut ended)| async move {
            loop {
                let event = tokio::select! {
                    event = rx.recv() => event,
                    // Signed out, revoked or removed: the stream ends.
                    _ = ended.changed() => return None,
                };
                match event {
                    Ok(event) if visible(&state, &event) => {
                        let sse = SseEvent::default()
                            .id(event.envelope.id.clone())
                            .event(event.envelope.kind.as_str())
                            .data(event.body.clone());
                        return Some((Ok::<_, Infallible>(sse), (rx, state, gauge, ended)));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        let sse = SseEvent::default()
                            .event("lagged")
                            .data(json!({"missed": n}).to_string());
                        return Some((Ok(sse), (rx, state, gauge, ended)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Why a staff stream ended before its client closed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// Signed out, token revoked, user removed.
    Revoked,
    /// The node is stopping: reconnect (to another node).
    Stopping,
}

impl Ended {
    fn close_frame(self) -> CloseFrame {
        match self {
            Ended::Revoked => CloseFrame {
                code: close_code::POLICY,
                reason: "signed out".into(),
            },
            Ended::Stopping => CloseFrame {
                code: close_code::AWAY,
                reason: "the server is restarting".into(),
            },
        }
    }
}

/// The largest frame the inbox's socket accepts.
const STAFF_FRAME_LIMIT: usize = 16 * 1024;

/// Marks a staff member as present while their inbox stream is open, and
/// watches that what they signed in with still holds: a sign-out, a revoked
/// token or a removed user on this node ends the stream at once (the
/// `ended` receiver turns), and one on another node at the next heartbeat,
/// when the credential is checked again. Stops when dropped with the stream.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(state: &AppState, staff: Staff) -> (Self, watch::Receiver<Option<Ended>>) {
        let (ended_tx, ended) = watch::channel(None);
        let state = state.clone();
        let mut revoked = state.inner.revoked.subscribe();
        let mut stopping = state.stopping();
        let every = Duration::from_millis(baton_runtime::PRESENCE_HEARTBEAT_MS.unsigned_abs());
        let task = tokio::spawn(async move {
            let user_id = staff.user.id.clone();
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let now = state.runtime().now();
                        if !still_valid(&state, &staff).await {
                            break;
                        }
                        if let Err(e) = state.runtime().store().touch_user(&user_id, now).await {
                            tracing::warn!(%user_id, error = %e, "cannot record a staff heartbeat");
                        }
                    }
                    what = revoked.recv() => match what {
                        Ok(what) if what.ends(&staff) => break,
                        Ok(_) => {}
                        // Missed some: look at the credential itself.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            if !still_valid(&state, &staff).await {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                        let _ = ended_tx.send(Some(Ended::Stopping));
                        return;
                    }
                }
            }
            tracing::info!(%user_id, "staff stream ended: its sign-in was revoked");
            let _ = ended_tx.send(Some(Ended::Revoked));
        });
        (Heartbeat(task), ended)
    }
}

/// Whether the session or API token a stream was opened with still works.
/// A failing database keeps the stream (it is not proof of a revocation).
async fn still_valid(state: &AppState, staff: &Staff) -> bool {
    let store = state.runtime().store();
    let found = match &staff.credential {
        Credential::Session(hash) => store
            .session(hash, state.runtime().now())
            .await
            .map(|s| s.is_some()),
        Credential::ApiToken(id) => store.api_token(id).await.map(|t| t.is_some()),
    };
    found.unwrap_or(true)
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often a quiet WebSocket is pinged.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A WebSocket that has sent nothing (not even a pong) for this long is gone:
/// a closed laptop, a dropped network. Its task and socket are freed.
const SILENT_FOR: Duration = Duration::from_secs(75);

/// Pings a quiet WebSocket and notices one whose peer has gone away.
pub struct Liveness {
    tick: tokio::time::Interval,
    last_heard: tokio::time::Instant,
}

/// What the next [`Liveness::tick`] asks of the socket.
pub enum Tick {
    Ping,
    Gone,
}

impl Liveness {
    pub fn new() -> Self {
        let start = tokio::time::Instant::now() + PING_EVERY;
        let mut tick = tokio::time::interval_at(start, PING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            tick,
            last_heard: tokio::time::Instant::now(),
        }
    }

    /// The peer sent something.
    pub fn heard(&mut self) {
        self.last_heard = tokio::time::Instant::now();
    }

    pub async fn tick(&mut self) -> Tick {
        self.tick.tick().await;
        if self.last_heard.elapsed() >= SILENT_FOR {
            Tick::Gone
        } else {
            Tick::Ping
        }
    }
}

/// Whether a WebSocket read failed because the peer sent a message or frame
/// over the limit.
pub fn too_big(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Closes a socket with 1009 ("message too big") before the connection goes.
pub async fn close_too_big<S>(sink: &mut S)
where
    S: futures_util::Sink<WsMessage> + Unpin,
{
    let frame = CloseFrame {
        code: close_code::SIZE,
        reason: "message too big".into(),
    };
    let _ = sink.send(WsMessage::Close(Some(frame))).await;
    let _ = sink.close().await;
}

async fn staff_socket(
    state: AppState,
    staff: Staff,
    mut rx: broadcast::Receiver<Arc<StoredEvent>>,
    socket: WebSocket,
) {
    let _gauge = state.metrics().ws_open();
    let (_heartbeat, mut ended) = Heartbeat::start(&state, staff);
    let (mut sink, mut incoming) = socket.split();
    let mut live = Liveness::new();
    loop {
        tokio::select! {
            tick = live.tick() => match tick {
                Tick::Gone => break,
                Tick::Ping => {
                    if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                        break;
                    }
                }
            },
            msg = incoming.next() => match msg {
                Some(Err(e)) if too_big(&e) => {
                    close_too_big(&mut sink).await;
                    break;
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                _ => live.heard(),
            },
            _ = ended.changed() => {
                let why = (*ended.borrow()).unwrap_or(Ended::Revoked);
                let _ = sink.send(WsMessage::Close(Some(why.close_frame()))).await;
                break;
            }
            event = rx.recv() => match event {
                Ok(event) => {
                    if !visible(&state, &event) {
                        continue;
                    }
                    if sink.send(WsMessage::Text(event.body.clone().into())).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let frame = json!({"type": "lagged", "missed": n}).to_string();
                    if sink.send(WsMessage::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
}
