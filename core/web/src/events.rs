//! The inbox's live event stream (WebSocket or server-sent events) and the
//! widget's status frames.

use crate::AppState;
use crate::auth::{SESSION_COOKIE, Staff, cookie};
use crate::error::{ApiError, ApiResult};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use baton_model::wire::ConversationView;
use baton_model::{EventKind, Status};
use baton_store::StoredEvent;
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// Someone is typing in a conversation.
#[derive(Clone, Debug)]
pub struct Typing {
    pub conversation_id: String,
    /// `visitor`, or the agent's name.
    pub from: String,
}

/// `{"type":"status","status","agent":{"name"}|null,"queue_position"?}` for the widget.
pub async fn status_frame(state: &AppState, conv: &ConversationView) -> Value {
    let agent = match (conv.status, &conv.assignee) {
        (Status::Active, Some(a)) => json!({"name": a.name}),
        _ => Value::Null,
    };
    let mut frame = json!({"type": "status", "status": conv.status, "agent": agent});
    if let Ok(Some(position)) = state.runtime().queue_position(conv).await
        && let Some(obj) = frame.as_object_mut()
    {
        obj.insert("queue_position".into(), json!(position));
    }
    frame
}

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
        check_same_origin(&parts.headers)?;
    }
    let staff = Staff::from_request_parts(&mut parts, &state).await?;
    let rx = state.runtime().bus().subscribe();
    if wants_ws {
        let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        return Ok(upgrade
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
    let gauge = Arc::new((state.metrics().ws_open(), Heartbeat::start(&state, &staff)));
    let events = stream::unfold((rx, state, gauge), |(mut rx, state, gauge)| async move {
        loop {
            match rx.recv().await {
                Ok(event) if visible(&state, &event) => {
                    let sse = SseEvent::default()
                        .id(event.envelope.id.clone())
                        .event(event.envelope.kind.as_str())
                        .data(event.body.clone());
                    return Some((Ok::<_, Infallible>(sse), (rx, state, gauge)));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    let sse = SseEvent::default()
                        .event("lagged")
                        .data(json!({"missed": n}).to_string());
                    return Some((Ok(sse), (rx, state, gauge)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn check_same_origin(headers: &axum::http::HeaderMap) -> ApiResult<()> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (None, _) => Ok(()),
        (Some(origin), Some(host)) if origin.split("://").nth(1) == Some(host) => Ok(()),
        _ => Err(ApiError::forbidden("cross-origin WebSocket refused")),
    }
}

/// Marks a staff member as present while their inbox stream is open; stops
/// when dropped with the stream.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(state: &AppState, staff: &Staff) -> Self {
        let (state, user_id) = (state.clone(), staff.user.id.clone());
        let every = Duration::from_millis(baton_runtime::PRESENCE_HEARTBEAT_MS.unsigned_abs());
        Heartbeat(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let now = state.runtime().now();
                if let Err(e) = state.runtime().store().touch_user(&user_id, now).await {
                    tracing::warn!(%user_id, error = %e, "cannot record a staff heartbeat");
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn staff_socket(
    state: AppState,
    staff: Staff,
    mut rx: broadcast::Receiver<Arc<StoredEvent>>,
    socket: WebSocket,
) {
    let _gauge = state.metrics().ws_open();
    let _heartbeat = Heartbeat::start(&state, &staff);
    let (mut sink, mut incoming) = socket.split();
    loop {
        tokio::select! {
            msg = incoming.next() => match msg {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                _ => continue,
            },
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
