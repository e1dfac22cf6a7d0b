//! The visitor side: sessions, messages, buttons and the widget's WebSocket.

use crate::AppState;
use crate::auth::{ClientIp, Visitor};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Q, RawBody};
use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_channel::{Channel, Inbound, RawInbound};
use baton_channel_web::WebChannel;
use baton_model::wire::{ConversationView, MessageView};
use baton_model::{EventKind, SenderKind, Status};
use baton_runtime::auth::{TokenKind, new_token, token_hash};
use baton_runtime::bus::Signal;
use baton_runtime::{DEFAULT_BOT, StartConversation};
use baton_store::NewContact;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SessionBody {
    #[serde(default)]
    bot: Option<String>,
    #[serde(default)]
    visitor: Option<VisitorBody>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VisitorBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

fn clean(value: Option<String>, field: &str, max: usize) -> ApiResult<Option<String>> {
    match value.map(|v| v.trim().to_owned()) {
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() > max => Err(ApiError::invalid(format!(
            "{field} must be at most {max} characters"
        ))),
        other => Ok(other),
    }
}

/// Refuses a bot id this server does not have (404, the id cut short).
fn known_bot(state: &AppState, bot: &str) -> ApiResult<()> {
    if state.runtime().has_bot(bot) {
        return Ok(());
    }
    Err(ApiError::not_found(&format!(
        "bot `{}`",
        bot.chars().take(64).collect::<String>()
    )))
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub async fn create_session(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: crate::extract::OptionalBody<SessionBody>,
) -> ApiResult<Response> {
    AppState::check_rate(&state.inner.ip_limiter, format!("ip:{ip}"))?;
    let body = body.0;
    let bot = body.bot.unwrap_or_else(|| DEFAULT_BOT.to_owned());
    known_bot(&state, &bot)?;
    let visitor = body.visitor.unwrap_or_default();
    let name = clean(visitor.name, "visitor.name", 200)?;
    let email = clean(visitor.email, "visitor.email", 254)?;
    if let Some(e) = &email
        && !valid_email(e)
    {
        return Err(ApiError::invalid(format!(
            "visitor.email `{e}` is not an email address"
        )));
    }
    let token = new_token(TokenKind::Visitor);
    let conversation = state
        .runtime()
        .start_conversation(StartConversation {
            bot_id: bot,
            channel: baton_model::ChannelKind::Web,
            contact: NewContact {
                name,
                email,
                phone: None,
                external_id: None,
            },
            thread_key: None,
            visitor_token_hash: Some(token_hash(&token)),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "conversation_id": conversation.id,
            "visitor_token": token,
            "conversation": ConversationView::from(&conversation),
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigQuery {
    #[serde(default)]
    bot: Option<String>,
}

/// `GET /api/v1/widget/config?bot=`: what the widget shows before and around a
/// hand-over (no token needed: it is the same for every visitor).
pub async fn config(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Q(q): Q<ConfigQuery>,
) -> ApiResult<Json<Value>> {
    AppState::check_rate(&state.inner.ip_limiter, format!("ip:{ip}"))?;
    let bot_id = q.bot.unwrap_or_else(|| DEFAULT_BOT.to_owned());
    known_bot(&state, &bot_id)?;
    let bot = state.runtime().bot_config(&bot_id);
    // The button belongs to the bot's department (seed 001): with nobody
    // there, it becomes "leave a message".
    let availability = state.runtime().bot_availability(&bot_id).await?;
    let available = availability != baton_model::routing::Availability::Offline;
    Ok(Json(json!({
        "bot": {"id": bot_id, "name": bot.name, "greeting": bot.greeting},
        "handover": {
            "enabled": bot.handover.enabled,
            "request_button_after": bot.handover.request_button_after,
            "available": available,
            "availability": availability,
            "offline_message": bot.handover.offline_message,
        },
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    email: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

/// `POST /api/v1/widget/contact`: the leave-a-message form.
pub async fn leave_message(
    State(state): State<AppState>,
    visitor: Visitor,
    Body(body): Body<ContactBody>,
) -> ApiResult<Json<Value>> {
    AppState::check_rate(
        &state.inner.widget_limiter,
        format!("conv:{}", visitor.conversation.id),
    )?;
    let email = body.email.trim().to_owned();
    if email.chars().count() > 254 || !valid_email(&email) {
        return Err(ApiError::invalid(format!(
            "`{}` is not an email address",
            email.chars().take(254).collect::<String>()
        )));
    }
    let name = clean(body.name, "name", 200)?;
    let conversation = state
        .runtime()
        .leave_message(&visitor.conversation.id, name.as_deref(), &email, body.text)
        .await?;
    Ok(Json(
        json!({ "conversation": ConversationView::from(&conversation) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfterQuery {
    #[serde(default)]
    after: i64,
}

pub async fn list_messages(
    State(state): State<AppState>,
    visitor: Visitor,
    Q(q): Q<AfterQuery>,
) -> ApiResult<Json<Value>> {
    let conv = &visitor.conversation;
    let messages = state
        .runtime()
        .store()
        .messages(&conv.id, q.after.max(0), false, 1000)
        .await?;
    let view = ConversationView::from(conv);
    let queue_position = state.runtime().queue_position(&view).await?;
    let all = if q.after <= 0 {
        messages.clone()
    } else {
        state
            .runtime()
            .store()
            .messages(&conv.id, 0, false, 1000)
            .await?
    };
    let bot = state.runtime().bot_config(&conv.bot_id);
    Ok(Json(json!({
        "conversation": view,
        "queue_position": queue_position,
        // Whether to offer "Talk to a human": only after `request_button_after`
        // bot answers (seed 001), and only while the bot has the conversation.
        "request_button": bot.handover.enabled
            && matches!(view.status, Status::Bot | Status::Resolved)
            && bot_answers(&all) >= bot.handover.request_button_after as usize,
        "messages": messages.iter().map(MessageView::from).collect::<Vec<_>>(),
    })))
}

/// Routes a widget frame through the web channel's normalizer into the runtime,
/// the same path every channel takes.
async fn ingest_frame(
    state: &AppState,
    conversation_id: &str,
    body: Vec<u8>,
) -> ApiResult<Option<baton_channel::Ingested>> {
    let raw = RawInbound {
        thread_hint: Some(conversation_id.to_owned()),
        body,
    };
    let inbound: Option<Inbound> = WebChannel
        .normalize(&raw)
        .map_err(|e| ApiError::invalid(e.to_string()))?
        .into_iter()
        .next();
    match inbound {
        Some(inbound) => {
            let ingested = state.runtime().ingest_inbound(inbound).await?;
            if !ingested.duplicate && ingested.message.is_some() {
                state.metrics().message(SenderKind::Visitor);
            }
            Ok(Some(ingested))
        }
        None => Ok(None),
    }
}

pub async fn post_message(
    State(state): State<AppState>,
    visitor: Visitor,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    // Validate the JSON shape first so that errors say what is wrong with it.
    let frame: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    if frame.get("type").is_some() || frame.get("action").is_some() {
        return Err(ApiError::invalid(
            "send `{\"text\", \"client_id\"?}`; buttons go to /widget/actions",
        ));
    }
    let ingested = ingest_frame(&state, &visitor.conversation.id, body.to_vec())
        .await?
        .ok_or_else(|| ApiError::invalid("missing field `text`"))?;
    let message = ingested
        .message
        .as_ref()
        .map(MessageView::from)
        .ok_or_else(|| ApiError::invalid("missing field `text`"))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "message": message, "duplicate": ingested.duplicate })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    action: String,
}

pub async fn post_action(
    State(state): State<AppState>,
    visitor: Visitor,
    Body(body): Body<ActionBody>,
) -> ApiResult<Json<Value>> {
    if body.action.is_empty() || body.action.len() > 128 {
        return Err(ApiError::invalid("action must be 1 to 128 bytes"));
    }
    let conversation = state
        .runtime()
        .visitor_action(&visitor.conversation.id, &body.action)
        .await?;
    Ok(Json(
        json!({ "conversation": ConversationView::from(&conversation) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsQuery {
    token: String,
    /// Replay messages after this sequence number first (for reconnects).
    #[serde(default)]
    after: Option<i64>,
}

pub async fn ws(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Q(q): Q<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    AppState::check_rate(&state.inner.ip_limiter, format!("ip:{ip}"))?;
    let visitor = Visitor::from_token(&state, &q.token).await?;
    let max = state.runtime().config().limits.max_message_bytes + 4096;
    Ok(upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(crate::WS_BUFFER)
        .write_buffer_size(crate::WS_BUFFER)
        .on_upgrade(move |socket| visitor_socket(state, visitor, q.after.unwrap_or(0), socket))
        .into_response())
}

async fn visitor_socket(state: AppState, visitor: Visitor, after: i64, socket: WebSocket) {
    let conversation_id = visitor.conversation.id.clone();
    let _gauge = state.metrics().ws_open();
    // Follow before reading history so nothing falls between the two.
    let mut feed = state.runtime().bus().follow(&conversation_id);
    let (mut sink, mut stream) = socket.split();

    let mut last_seq = after.max(0);
    if catch_up(&state, &conversation_id, &mut last_seq, &mut sink)
        .await
        .is_err()
    {
        return;
    }
    let Ok(current) = state.runtime().conversation(&conversation_id).await else {
        return;
    };
    let mut view = ConversationView::from(&current);
    let mut position = state.runtime().queue_position(&view).await.ok().flatten();
    if let Some(place) = position {
        state
            .runtime()
            .bus()
            .waits(&conversation_id, view.department.clone(), place);
    }
    if send_json(&mut sink, &status_frame(&view, position))
        .await
        .is_err()
    {
        return;
    }
    let mut live = crate::events::Liveness::new();
    let mut stopping = state.stopping();

    loop {
        tokio::select! {
            tick = live.tick() => match tick {
                crate::events::Tick::Gone => break,
                crate::events::Tick::Ping => {
                    if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                        break;
                    }
                }
            },
            () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                // The widget reconnects (to another node) and replays what it missed.
                let frame = axum::extract::ws::CloseFrame {
                    code: axum::extract::ws::close_code::AWAY,
                    reason: "the server is restarting".into(),
                };
                let _ = sink.send(WsMessage::Close(Some(frame))).await;
                break;
            }
            incoming = stream.next() => {
                live.heard();
                let msg = match incoming {
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) if crate::events::too_big(&e) => {
                        crate::events::close_too_big(&mut sink).await;
                        break;
                    }
                    _ => break,
                };
                let body = match msg {
                    WsMessage::Text(t) => t.as_bytes().to_vec(),
                    WsMessage::Binary(b) => b.to_vec(),
                    WsMessage::Close(_) => break,
                    _ => continue,
                };
                // Boxed: an idle socket's task should not carry the whole
                // message path's state.
                if let Some(reply) = Box::pin(handle_client_frame(&state, &conversation_id, body)).await
                    && send_json(&mut sink, &reply).await.is_err()
                {
                    break;
                }
            }
            signal = feed.rx.recv() => {
                let sent = match signal {
                    Ok(Signal::Event(hub)) => {
                        let env = &hub.event.envelope;
                        match (&env.kind, &env.data.message) {
                            (EventKind::MessageCreated, Some(m)) => {
                                // Internal notes never reach the visitor; replays are skipped.
                                if m.internal || m.seq <= last_seq {
                                    continue;
                                }
                                last_seq = m.seq;
                                let frame = hub.rendered.get_or_init(|| {
                                    json!({"type": "message", "message": m}).to_string().into()
                                });
                                sink.send(WsMessage::Text((&**frame).into())).await
                            }
                            (EventKind::MessageCreated, None) => continue,
                            _ => {
                                view = env.data.conversation.clone();
                                position = hub.queue_position;
                                send_json(&mut sink, &status_frame(&view, position)).await
                            }
                        }
                    }
                    Ok(Signal::Queue(place)) => {
                        if view.status != Status::Waiting || position == Some(place) {
                            continue;
                        }
                        position = Some(place);
                        send_json(&mut sink, &status_frame(&view, position)).await
                    }
                    // A streamed bot reply as written so far; the stored message replaces it.
                    Ok(Signal::Draft(text)) => {
                        send_json(&mut sink, &json!({"type": "draft", "from": "bot", "text": &*text})).await
                    }
                    Ok(Signal::Typing(from)) => {
                        if &*from == "visitor" {
                            continue;
                        }
                        send_json(&mut sink, &json!({"type": "typing", "from": &*from})).await
                    }
                    // Fell behind: resync from the store rather than drop messages.
                    Err(RecvError::Lagged(_)) => {
                        catch_up(&state, &conversation_id, &mut last_seq, &mut sink).await
                    }
                    Err(RecvError::Closed) => break,
                };
                if sent.is_err() {
                    break;
                }
            }
        }
    }
}

/// Sends the stored messages after `last_seq` and moves it on.
async fn catch_up(
    state: &AppState,
    conversation_id: &str,
    last_seq: &mut i64,
    sink: &mut futures_util::stream::SplitSink<WebSocket, WsMessage>,
) -> Result<(), axum::Error> {
    let missed = match state
        .runtime()
        .store()
        .messages(conversation_id, *last_seq, false, 10_000)
        .await
    {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(%conversation_id, error = %e, "cannot load history for a widget socket");
            return Err(axum::Error::new(e));
        }
    };
    for m in &missed {
        *last_seq = m.seq;
        send_json(
            sink,
            &json!({"type": "message", "message": MessageView::from(m)}),
        )
        .await?;
    }
    Ok(())
}

/// `{"type":"status","status","agent":{"name"}|null,"queue_position"?}` for the widget.
pub fn status_frame(conv: &ConversationView, queue_position: Option<usize>) -> Value {
    let agent = match (conv.status, &conv.assignee) {
        (Status::Active, Some(a)) => json!({"name": a.name}),
        _ => Value::Null,
    };
    let mut frame = json!({"type": "status", "status": conv.status, "agent": agent});
    if let (Some(position), Some(obj)) = (queue_position, frame.as_object_mut()) {
        obj.insert("queue_position".into(), json!(position));
    }
    frame
}

/// Bot messages since the visitor first wrote (the greeting is not an answer).
fn bot_answers(messages: &[baton_model::Message]) -> usize {
    let Some(first) = messages
        .iter()
        .find(|m| m.sender == SenderKind::Visitor)
        .map(|m| m.seq)
    else {
        return 0;
    };
    messages
        .iter()
        .filter(|m| m.sender == SenderKind::Bot && m.seq > first)
        .count()
}

/// Handles one client frame; returns an error frame to send back, if any.
async fn handle_client_frame(
    state: &AppState,
    conversation_id: &str,
    body: Vec<u8>,
) -> Option<Value> {
    let is_typing = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(|t| t == "typing"))
        .unwrap_or(false);
    if is_typing {
        state
            .runtime()
            .bus()
            .signal(conversation_id, Signal::Typing("visitor".into()));
        return None;
    }
    if let Err(e) = AppState::check_rate(
        &state.inner.widget_limiter,
        format!("conv:{conversation_id}"),
    ) {
        return Some(error_frame(&e));
    }
    match ingest_frame(state, conversation_id, body).await {
        Ok(_) => None,
        Err(e) => Some(error_frame(&e)),
    }
}

fn error_frame(e: &ApiError) -> Value {
    json!({"type": "error", "error": {"code": e.code, "message": e.message}})
}

async fn send_json(
    sink: &mut futures_util::stream::SplitSink<WebSocket, WsMessage>,
    value: &Value,
) -> Result<(), axum::Error> {
    sink.send(WsMessage::Text(value.to_string().into())).await
}
