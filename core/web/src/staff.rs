//! The agent and admin side: sign-in, users, tokens and conversations.

use crate::AppState;
use crate::auth::{CSRF_COOKIE, ClientIp, Credential, Revoked, SESSION_COOKIE, Staff, role_from};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, OptionalBody, Q};
use axum::Json;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_model::wire::{ConversationView, MessageView};
use baton_model::{AgentRef, Input, Presence, Reason, Role, SenderKind, Status, TransferTarget};
use baton_runtime::auth::{PoolError, TokenKind, check_password_policy, new_token, token_hash};
use baton_store::{AssigneeFilter, ConversationFilter, Deactivation, NewUser, TokenListing, User};
use serde::Deserialize;
use serde_json::{Value, json};

/// How long a browser session lasts.
const SESSION_DAYS: i64 = 14;

pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "role": u.role,
        "presence": u.presence,
        "departments": u.departments,
        "expertise": u.expertise,
        "capacity": u.capacity,
        "notifications": {"assigned": u.notify_assigned, "task": u.notify_task},
        "created_at": u.created_at,
        "active": u.deactivated_at.is_none(),
        "deactivated_at": u.deactivated_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Body(body): Body<LoginBody>,
) -> ApiResult<Response> {
    crate::auth::check_origin(&headers, state.public_origin())?;
    AppState::check_rate(&state.inner.login_limiter, format!("login:{ip}")).map_err(|e| {
        ApiError {
            message: format!(
                "too many sign-in attempts from your address; try again in {} s",
                e.retry_after.unwrap_or(1)
            ),
            ..e
        }
    })?;
    // No account has a longer email (RFC 5321); refusing it first keeps
    // the throttle's work bounded.
    if body.email.len() > 254 {
        return Err(ApiError::unauthorized("wrong email or password"));
    }
    let from: std::net::IpAddr = ip
        .parse()
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let attempt = state
        .inner
        .login_throttle
        .begin(&body.email, from, std::time::Instant::now())
        .map_err(|wait| {
            let secs = crate::throttle::whole_seconds(wait);
            ApiError {
                message: format!(
                    "too many failed sign-ins for this account; try again in {secs} s"
                ),
                ..ApiError::rate_limited(secs)
            }
        })?;
    let store = state.runtime().store();
    let user = store.user_by_email(&body.email).await?;
    // Unknown emails are checked against a hash with the same parameters,
    // so that timing does not tell which emails have accounts.
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => baton_runtime::auth::dummy_hash().to_owned(),
    };
    let ok = state
        .inner
        .passwords
        .verify(body.password, hash)
        .await
        .map_err(pool_error)?;
    let Some(user) = user.filter(|_| ok) else {
        attempt.failed(std::time::Instant::now());
        return Err(ApiError::unauthorized("wrong email or password"));
    };
    attempt.succeeded(from, std::time::Instant::now());
    let session = new_token(TokenKind::Session);
    let csrf = new_token(TokenKind::Session)
        .trim_start_matches("bs_")
        .to_owned();
    let now = state.runtime().now();
    let expires = now.plus_millis(SESSION_DAYS * 86_400_000);
    store
        .create_session(&token_hash(&session), &user.id, &csrf, now, expires)
        .await?;
    let secure = if state.inner.options.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let max_age = SESSION_DAYS * 86_400;
    let session_cookie = format!(
        "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    );
    // Readable by the inbox's script, which echoes it in X-CSRF-Token.
    let csrf_cookie =
        format!("{CSRF_COOKIE}={csrf}; Path=/; SameSite=Strict; Max-Age={max_age}{secure}");
    let mut response = Json(json!({"user": user_json(&user), "csrf_token": csrf})).into_response();
    for c in [session_cookie, csrf_cookie] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    tracing::info!(user_id = %user.id, "signed in");
    Ok(response)
}

/// The password pool was too busy, or failed: 503 with `Retry-After`.
fn pool_error(e: PoolError) -> ApiError {
    match e {
        PoolError::Busy { retry_after_secs } => ApiError {
            retry_after: Some(retry_after_secs),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
        },
        PoolError::Failed(why) => {
            tracing::error!(error = %why, "password hashing failed");
            ApiError::internal()
        }
    }
}

/// Ends what the request signed in with: a browser session (its cookies are
/// cleared), or the API token it carries, which stops working at once.
pub async fn logout(State(state): State<AppState>, req: Request) -> ApiResult<Response> {
    let (mut parts, _) = req.into_parts();
    let staff = Staff::from_request_parts(&mut parts, &state).await?;
    let store = state.runtime().store();
    match &staff.credential {
        Credential::Session(hash) => {
            // Signing out is leaving: visitors are no longer promised this person.
            store
                .set_presence(&staff.user.id, Presence::Offline)
                .await?;
            store.delete_session(hash).await?;
            state.runtime().presence_changed();
        }
        Credential::ApiToken(id) => {
            store.revoke_api_token(id).await?;
            tracing::info!(user_id = %staff.user.id, token_id = %id, "API token revoked by signing out with it");
        }
    }
    state.revoke(Revoked::Credential(staff.credential.clone()));
    let mut response = StatusCode::NO_CONTENT.into_response();
    if matches!(staff.credential, Credential::Session(_)) {
        for name in [SESSION_COOKIE, CSRF_COOKIE] {
            if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Path=/; Max-Age=0")) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }
    Ok(response)
}

pub async fn me(staff: Staff) -> Json<Value> {
    Json(json!({"user": user_json(&staff.user)}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceBody {
    presence: String,
}

pub async fn set_presence(
    State(state): State<AppState>,
    staff: Staff,
    Body(body): Body<PresenceBody>,
) -> ApiResult<Json<Value>> {
    let presence: Presence = body
        .presence
        .parse()
        .map_err(|e: baton_model::model::UnknownValue| ApiError::invalid(e.to_string()))?;
    state
        .runtime()
        .store()
        .set_presence(&staff.user.id, presence)
        .await?;
    state.runtime().presence_changed();
    let user = User {
        presence,
        ..staff.user
    };
    Ok(Json(json!({"user": user_json(&user)})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    #[serde(default)]
    name: Option<String>,
}

pub async fn create_token(
    State(state): State<AppState>,
    staff: Staff,
    OptionalBody(body): OptionalBody<TokenBody>,
) -> ApiResult<Response> {
    let name = body.name.unwrap_or_else(|| "api".to_owned());
    if name.chars().count() > 100 {
        return Err(ApiError::invalid("name must be at most 100 characters"));
    }
    let token = new_token(TokenKind::Api);
    let record = state
        .runtime()
        .store()
        .create_api_token(
            &staff.user.id,
            &name,
            &token_hash(&token),
            state.runtime().now(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "id": record.id, "name": record.name})),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UsersQuery {
    /// Also list removed (deactivated) users.
    #[serde(default)]
    include_deactivated: bool,
}

fn token_json(t: &TokenListing) -> Value {
    json!({
        "id": t.token.id,
        "name": t.token.name,
        "user": {"id": t.token.user_id, "name": t.user_name, "email": t.user_email},
        "created_at": t.token.created_at,
        "last_used_at": t.token.last_used_at,
    })
}

/// `GET /api/v1/tokens`: your own API tokens; owners and admins see everyone's.
/// The secrets themselves are never shown again.
pub async fn list_tokens(State(state): State<AppState>, staff: Staff) -> ApiResult<Json<Value>> {
    let of = if staff.user.role.may_administer() {
        None
    } else {
        Some(staff.user.id.as_str())
    };
    let tokens = state.runtime().store().list_api_tokens(of).await?;
    Ok(Json(
        json!({"tokens": tokens.iter().map(token_json).collect::<Vec<_>>()}),
    ))
}

/// `DELETE /api/v1/tokens/{id}`: the token stops working at once. Your own,
/// or anyone's for owners and admins.
pub async fn revoke_token(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let store = state.runtime().store();
    let token = store
        .api_token(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("API token"))?;
    if token.user_id != staff.user.id {
        // Someone else's token: only admins may know it exists.
        staff
            .require_admin()
            .map_err(|_| ApiError::not_found("API token"))?;
    }
    if !store.revoke_api_token(&id).await? {
        return Err(ApiError::not_found("API token"));
    }
    state.revoke(Revoked::Credential(Credential::ApiToken(id.clone())));
    tracing::info!(token_id = %id, by = %staff.user.id, "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}

fn last_owner() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "last_owner",
        "this is the last owner; make someone else an owner first",
    )
}

/// `DELETE /api/v1/users/{id}`: removes (deactivates) a staff member. Their
/// sessions and API tokens stop working at once; the conversations they
/// handled keep their name, and those they held go back to the queue. The
/// last owner cannot be removed, nor can you remove yourself.
pub async fn remove_user(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    staff.require_admin()?;
    let store = state.runtime().store();
    let target = store
        .user(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    if target.id == staff.user.id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "self_removal",
            "you cannot remove your own account; ask another admin",
        ));
    }
    if target.role == Role::Owner && staff.user.role != Role::Owner {
        return Err(ApiError::forbidden("only an owner may remove an owner"));
    }
    match store.deactivate_user(&id, state.runtime().now()).await? {
        Deactivation::Done => {}
        Deactivation::NotFound => return Err(ApiError::not_found("user")),
        Deactivation::AlreadyDeactivated => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_removed",
                "this user was already removed",
            ));
        }
        Deactivation::LastOwner => return Err(last_owner()),
    }
    state.revoke(Revoked::User(id.clone()));
    tracing::info!(user_id = %id, by = %staff.user.id, "user removed");
    state
        .runtime()
        .user_removed(&AgentRef {
            id: target.id.clone(),
            name: target.name.clone(),
        })
        .await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_users(
    State(state): State<AppState>,
    staff: Staff,
    Q(q): Q<UsersQuery>,
) -> ApiResult<Json<Value>> {
    staff.require_admin()?;
    let users = if q.include_deactivated {
        state.runtime().store().list_all_users().await?
    } else {
        state.runtime().store().list_users().await?
    };
    let users: Vec<Value> = users
        .iter()
        .map(|u| {
            let mut v = user_json(u);
            v["presence"] = json!(state.runtime().effective_presence(u));
            v
        })
        .collect();
    Ok(Json(json!({ "users": users })))
}

/// `GET /api/v1/agents`: who can take a conversation, for transfer pickers.
pub async fn list_agents(State(state): State<AppState>, _staff: Staff) -> ApiResult<Json<Value>> {
    let users = state.runtime().store().list_users().await?;
    let agents: Vec<Value> = users
        .iter()
        .filter(|u| u.role.may_respond())
        .map(|u| {
            let presence = state.runtime().effective_presence(u);
            json!({"id": u.id, "name": u.name, "role": u.role, "presence": presence})
        })
        .collect();
    Ok(Json(json!({ "agents": agents })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    name: Option<String>,
    /// Departments this person works in; empty is every department.
    #[serde(default)]
    departments: Option<Vec<String>>,
    /// Topics (intent or knowledge-base entry ids) they know best.
    #[serde(default)]
    expertise: Option<Vec<String>>,
    /// Conversations held at once under automatic assignment; 0 is no limit.
    #[serde(default)]
    capacity: Option<i64>,
    #[serde(default)]
    notifications: Option<NotificationSettings>,
    /// `true` brings back a removed user (they sign in with their old password).
    #[serde(default)]
    active: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    #[serde(default)]
    assigned: Option<bool>,
    #[serde(default)]
    task: Option<bool>,
}

fn clean_list(list: Option<Vec<String>>, field: &str) -> ApiResult<Option<Vec<String>>> {
    let Some(list) = list else { return Ok(None) };
    let mut out: Vec<String> = vec![];
    for item in list {
        let item = item.trim().to_owned();
        if item.is_empty() || item.chars().count() > 80 {
            return Err(ApiError::invalid(format!(
                "each entry of {field} must be 1 to 80 characters"
            )));
        }
        if !out.contains(&item) {
            out.push(item);
        }
    }
    if out.len() > 100 {
        return Err(ApiError::invalid(format!(
            "{field} takes at most 100 entries"
        )));
    }
    Ok(Some(out))
}

/// `PATCH /api/v1/users/{id}`: role, name, routing (departments, expertise,
/// capacity; admins) and notification settings (admins, or the user).
pub async fn update_user(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    Body(body): Body<UpdateUserBody>,
) -> ApiResult<Json<Value>> {
    let only_own_notifications = id == staff.user.id
        && body.role.is_none()
        && body.name.is_none()
        && body.departments.is_none()
        && body.expertise.is_none()
        && body.capacity.is_none()
        && body.active.is_none();
    if !only_own_notifications {
        staff.require_admin()?;
    }
    if body.active == Some(false) {
        return Err(ApiError::invalid(
            "to remove a user, send DELETE /api/v1/users/{id}",
        ));
    }
    let departments = clean_list(body.departments, "departments")?;
    if let Some(list) = &departments
        && let Some(unknown) = list
            .iter()
            .find(|d| state.runtime().config().department(d).is_none())
    {
        return Err(ApiError::invalid(format!(
            "unknown department `{unknown}`; baton.toml's [[departments]] lists them"
        )));
    }
    let expertise = clean_list(body.expertise, "expertise")?;
    if body.capacity.is_some_and(|c| !(0..=1000).contains(&c)) {
        return Err(ApiError::invalid("capacity must be 0 (no limit) to 1000"));
    }
    let target = state
        .runtime()
        .store()
        .user(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let role = body.role.as_deref().map(role_from).transpose()?;
    let reactivate = body.active == Some(true) && target.deactivated_at.is_some();
    if reactivate && target.role == Role::Owner && staff.user.role != Role::Owner {
        return Err(ApiError::forbidden("only an owner may bring back an owner"));
    }
    let touches_owner = target.role == Role::Owner || role == Some(Role::Owner);
    if touches_owner && role.is_some_and(|r| r != target.role) && staff.user.role != Role::Owner {
        return Err(ApiError::forbidden(
            "only an owner may make or unmake an owner",
        ));
    }
    let name = match body.name.as_deref().map(str::trim) {
        Some(n) if n.is_empty() || n.chars().count() > 100 => {
            return Err(ApiError::invalid("name must be 1 to 100 characters"));
        }
        other => other,
    };
    // The role first: refused, nothing else has been written.
    if let Some(role) = role.filter(|r| *r != target.role) {
        match state.runtime().store().change_role(&id, role).await? {
            Deactivation::LastOwner => return Err(last_owner()),
            Deactivation::NotFound => return Err(ApiError::not_found("user")),
            Deactivation::Done | Deactivation::AlreadyDeactivated => {}
        }
    }
    let routing = baton_store::RoutingUpdate {
        departments,
        expertise,
        capacity: body.capacity,
        notify_assigned: body.notifications.as_ref().and_then(|n| n.assigned),
        notify_task: body.notifications.as_ref().and_then(|n| n.task),
    };
    if reactivate {
        state.runtime().store().reactivate_user(&id).await?;
        tracing::info!(user_id = %id, by = %staff.user.id, "user brought back");
    }
    state
        .runtime()
        .store()
        .update_routing(&id, &routing)
        .await?;
    let user = state
        .runtime()
        .store()
        .update_user(&id, None, name)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    state.runtime().presence_changed();
    Ok(Json(json!({"user": user_json(&user)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    tags: Vec<String>,
}

/// `PUT /api/v1/conversations/{id}/tags`.
pub async fn set_tags(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    Body(body): Body<TagsBody>,
) -> ApiResult<Json<Value>> {
    staff.require_responder()?;
    let conv = state.runtime().set_tags(&id, &body.tags).await?;
    Ok(conversation_json(&conv))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    email: String,
    name: String,
    password: String,
    role: String,
}

pub async fn create_user(
    State(state): State<AppState>,
    staff: Staff,
    Body(body): Body<NewUserBody>,
) -> ApiResult<Response> {
    staff.require_admin()?;
    let role = role_from(&body.role)?;
    if role == Role::Owner && staff.user.role != Role::Owner {
        return Err(ApiError::forbidden(
            "only an owner may create another owner",
        ));
    }
    let email = body.email.trim();
    if !email.contains('@') || email.len() > 254 || email.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid(format!(
            "`{email}` is not an email address"
        )));
    }
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name must be 1 to 100 characters"));
    }
    check_password_policy(&body.password).map_err(ApiError::invalid)?;
    let hash = state
        .inner
        .passwords
        .hash(body.password)
        .await
        .map_err(pool_error)?;
    let user = state
        .runtime()
        .store()
        .create_user(
            NewUser {
                email,
                name,
                role,
                password_hash: &hash,
            },
            state.runtime().now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"user": user_json(&user)}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

pub async fn list_conversations(
    State(state): State<AppState>,
    staff: Staff,
    Q(q): Q<ListQuery>,
) -> ApiResult<Json<Value>> {
    let status = match q.status.as_deref() {
        None | Some("") | Some("all") => None,
        Some(s) => Some(
            s.parse::<Status>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
    };
    let assignee = match q.assignee.as_deref() {
        None | Some("") | Some("any") => AssigneeFilter::Any,
        Some("me") => AssigneeFilter::User(staff.user.id.clone()),
        Some("unassigned") => AssigneeFilter::Unassigned,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown assignee `{other}`, expected one of: me, unassigned, any"
            )));
        }
    };
    let filter = ConversationFilter {
        status,
        assignee,
        // Without monitoring, agents see a bot's conversations only once handed over.
        hide_bot_status_of: state
            .runtime()
            .bots()
            .into_iter()
            .filter(|(_, bot)| !bot.handover.monitoring)
            .map(|(id, _)| id)
            .collect(),
        limit: q.limit.unwrap_or(200),
    };
    let store = state.runtime().store();
    let conversations = store.list_conversations(&filter).await?;
    let places: Vec<(String, i64)> = conversations
        .iter()
        .filter(|c| c.last_seq > 0)
        .map(|c| (c.id.clone(), c.last_seq))
        .collect();
    let mut last: std::collections::HashMap<String, MessageView> = store
        .messages_at(&places)
        .await?
        .iter()
        .map(|m| (m.conversation_id.clone(), MessageView::from(m)))
        .collect();
    let listed: Vec<Value> = conversations
        .iter()
        .map(|c| {
            let mut view = json!(ConversationView::from(c));
            // A preview for the list: the newest message, notes included.
            view["last_message"] = json!(last.remove(&c.id));
            view
        })
        .collect();
    Ok(Json(json!({ "conversations": listed })))
}

pub async fn get_conversation(
    State(state): State<AppState>,
    _staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let conv = state.runtime().conversation(&id).await?;
    let messages = state
        .runtime()
        .store()
        .messages(&id, 0, true, 10_000)
        .await?;
    state.runtime().store().mark_read(&id).await?;
    // Messages a platform has not taken carry why (the inbox marks them).
    let mut undelivered: std::collections::HashMap<String, Value> =
        std::collections::HashMap::new();
    for u in state.runtime().store().undelivered(&id).await? {
        let status = match u.status {
            baton_store::SendStatus::Failed => "failed",
            _ => "retrying",
        };
        undelivered.insert(
            u.message_id.clone(),
            json!({"status": status, "channel": u.channel, "error": u.error, "attempts": u.attempts}),
        );
    }
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut view = json!(MessageView::from(m));
            if let Some(d) = undelivered.remove(&m.id) {
                view["delivery"] = d;
            }
            view
        })
        .collect();
    Ok(Json(json!({
        "conversation": ConversationView::from(&conv),
        "messages": messages,
    })))
}

/// Sends a message the platform did not take again, behind what is queued.
pub async fn retry_delivery(
    State(state): State<AppState>,
    staff: Staff,
    Path((id, message_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    staff.require_responder()?;
    state.runtime().conversation(&id).await?;
    if !state.runtime().retry_delivery(&id, &message_id).await? {
        return Err(ApiError::not_found(&format!(
            "a failed delivery of message {message_id} in conversation {id}"
        )));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"queued": true}))))
}

fn conversation_json(conv: &baton_model::Conversation) -> Json<Value> {
    Json(json!({"conversation": ConversationView::from(conv)}))
}

pub async fn claim(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    staff.require_responder()?;
    let result = state.runtime().claim(&id, &staff.agent()).await;
    state.metrics().claim(result.is_ok());
    Ok(conversation_json(&result?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentMessageBody {
    text: String,
    #[serde(default)]
    internal: bool,
}

pub async fn post_message(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    Body(body): Body<AgentMessageBody>,
) -> ApiResult<Response> {
    staff.require_responder()?;
    let message = state
        .runtime()
        .agent_message(&id, &staff.agent(), body.text, body.internal)
        .await?;
    state.metrics().message(SenderKind::Agent);
    Ok((
        StatusCode::CREATED,
        Json(json!({"message": MessageView::from(&message)})),
    )
        .into_response())
}

/// A transition whose only argument is the acting agent.
async fn transition(
    state: &AppState,
    staff: &Staff,
    id: &str,
    input: fn(AgentRef) -> Input,
) -> ApiResult<Json<Value>> {
    staff.require_responder()?;
    let by = staff.agent();
    let conv = state.runtime().apply(id, move |_| input(by)).await?;
    Ok(conversation_json(&conv))
}

pub async fn handback(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    transition(&state, &staff, &id, |by| Input::HandBack { by }).await
}

pub async fn resolve(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    transition(&state, &staff, &id, |by| Input::Resolve { by: Some(by) }).await
}

pub async fn unclaim(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    transition(&state, &staff, &id, |by| Input::Unclaim { by }).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EscalateBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    department: Option<String>,
}

pub async fn escalate(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<EscalateBody>,
) -> ApiResult<Json<Value>> {
    staff.require_responder()?;
    let reason = match body.reason.as_deref() {
        None | Some("") => Reason::known(Reason::MANUAL),
        Some(r) => Reason::new(r).map_err(|e| ApiError::invalid(e.to_string()))?,
    };
    let department = clean_department(&state, body.department)?;
    let conv = state
        .runtime()
        .escalate(&id, reason, Some(&staff.agent()), department)
        .await?;
    Ok(conversation_json(&conv))
}

/// A department named in a request: one of `[[departments]]`, or none.
fn clean_department(state: &AppState, d: Option<String>) -> ApiResult<Option<String>> {
    match d.map(|d| d.trim().to_owned()) {
        Some(d) if d.is_empty() => Ok(None),
        Some(d) if state.runtime().config().department(&d).is_none() => {
            let shown: String = d.chars().take(100).collect();
            Err(ApiError::invalid(format!(
                "unknown department `{shown}`; baton.toml's [[departments]] lists them"
            )))
        }
        other => Ok(other),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    department: Option<String>,
}

pub async fn transfer(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    Body(body): Body<TransferBody>,
) -> ApiResult<Json<Value>> {
    staff.require_responder()?;
    let target = match (body.agent_id, clean_department(&state, body.department)?) {
        (Some(agent_id), None) => {
            let user = state
                .runtime()
                .store()
                .user(&agent_id)
                .await?
                .filter(|u| u.deactivated_at.is_none())
                .ok_or_else(|| ApiError::invalid(format!("no user with id `{agent_id}`")))?;
            if !user.role.may_respond() {
                return Err(ApiError::invalid(format!(
                    "{} is a viewer and cannot take conversations",
                    user.name
                )));
            }
            TransferTarget::Agent(AgentRef {
                id: user.id,
                name: user.name,
            })
        }
        (None, Some(dept)) => TransferTarget::Department(dept),
        _ => {
            return Err(ApiError::invalid(
                "name exactly one of `agent_id` or `department`",
            ));
        }
    };
    let conv = state
        .runtime()
        .apply(&id, move |_| Input::Transfer { to: target })
        .await?;
    Ok(conversation_json(&conv))
}

pub async fn typing(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    staff.require_responder()?;
    let conv = state.runtime().conversation(&id).await?;
    state.runtime().bus().signal(
        &conv.id,
        baton_runtime::bus::Signal::Typing(staff.user.name.as_str().into()),
    );
    Ok(StatusCode::NO_CONTENT)
}
