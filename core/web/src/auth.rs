//! Who is calling: a staff member (session cookie or API token) or a visitor
//! (visitor token). Roles and CSRF are checked here, before any handler runs.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use baton_model::{AgentRef, Conversation, Role};
use baton_runtime::auth::{TokenKind, constant_time_eq, token_hash};
use baton_store::User;
use std::net::SocketAddr;

pub const SESSION_COOKIE: &str = "baton_session";
pub const CSRF_COOKIE: &str = "baton_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in staff member.
pub struct Staff {
    pub user: User,
    /// What they signed in with, so that it can be revoked.
    pub credential: Credential,
}

/// The secret a staff request came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A browser session, by its token's hash.
    Session(String),
    /// An API token, by its id.
    ApiToken(String),
}

/// Something that stopped working just now: open streams that rest on it close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revoked {
    User(String),
    Credential(Credential),
}

impl Revoked {
    pub fn ends(&self, staff: &Staff) -> bool {
        match self {
            Revoked::User(id) => *id == staff.user.id,
            Revoked::Credential(c) => *c == staff.credential,
        }
    }
}

impl Staff {
    pub fn agent(&self) -> AgentRef {
        AgentRef {
            id: self.user.id.clone(),
            name: self.user.name.clone(),
        }
    }

    pub fn require_responder(&self) -> ApiResult<()> {
        if self.user.role.may_respond() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "your role is viewer: you may read conversations but not change them",
            ))
        }
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.user.role.may_administer() {
            Ok(())
        } else {
            Err(ApiError::forbidden("only owners and admins may do this"))
        }
    }
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The caller's address, when the server was started with connect info.
pub fn client_ip(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The caller's IP address as text ("unknown" without connect info, as in `oneshot` tests).
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let store = state.runtime().store();
        let now = state.runtime().now();
        if is_state_changing(&parts.method) {
            check_origin(&parts.headers, state.public_origin())?;
        }
        let (user, credential) = if let Some(token) = bearer(&parts.headers) {
            // Bearer requests are exempt from CSRF: a browser never adds them on its own.
            match TokenKind::of(token) {
                Some(TokenKind::Api) => {
                    let (user, record) = store
                        .user_by_api_token(&token_hash(token))
                        .await?
                        .ok_or_else(|| ApiError::unauthorized("unknown or revoked API token"))?;
                    let stale = record
                        .last_used_at
                        .is_none_or(|used| now.since(used) >= TOKEN_TOUCH_MS);
                    if stale {
                        store.touch_api_token(&record.id, now).await?;
                    }
                    (user, Credential::ApiToken(record.id))
                }
                Some(TokenKind::Visitor) => {
                    return Err(ApiError::forbidden(
                        "a visitor token cannot use staff endpoints",
                    ));
                }
                _ => return Err(ApiError::unauthorized("unknown or revoked API token")),
            }
        } else if let Some(session) = cookie(&parts.headers, SESSION_COOKIE) {
            let hash = token_hash(session);
            let record = store
                .session(&hash, now)
                .await?
                .ok_or_else(|| ApiError::unauthorized("your session has expired; sign in again"))?;
            if is_state_changing(&parts.method) {
                let sent = parts
                    .headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !constant_time_eq(sent.as_bytes(), record.csrf_token.as_bytes()) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "csrf",
                        "missing or wrong X-CSRF-Token header",
                    ));
                }
            }
            (record.user, Credential::Session(hash))
        } else {
            return Err(ApiError::unauthorized(
                "sign in, or send `Authorization: Bearer <api token>`",
            ));
        };
        AppState::check_rate(&state.inner.staff_limiter, format!("user:{}", user.id))?;
        // A sign of life keeps "online" true for visitors; written at most
        // every heartbeat, not on every request.
        let stale = user
            .last_seen_at
            .is_none_or(|seen| now.since(seen) >= baton_runtime::PRESENCE_HEARTBEAT_MS);
        if stale {
            store.touch_user(&user.id, now).await?;
        }
        Ok(Staff { user, credential })
    }
}

/// How often a token's "last used" is written, at most.
const TOKEN_TOUCH_MS: i64 = 60_000;

/// Refuses a request whose `Origin` is another site's.
///
/// Browsers send `Origin` on every cross-site request and on same-site
/// POST/PUT/PATCH/DELETE; a page on another site that gets a signed-in
/// browser to send one (with or without a stolen CSRF token) is refused
/// here. Requests without `Origin` (curl, scripts, server-to-server) are
/// left to the CSRF token and bearer rules. The served origin is
/// `BATON_PUBLIC_URL` when set, else the request's own `Host`.
pub fn check_origin(headers: &HeaderMap, public_origin: Option<&str>) -> ApiResult<()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let refuse = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "origin",
            "this request comes from another site (its Origin is not this server's)",
        )
    };
    let origin = origin.to_str().map_err(|_| refuse())?.trim();
    if let Some(public) = public_origin
        && origin.eq_ignore_ascii_case(public)
    {
        return Ok(());
    }
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(refuse)?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(refuse)?;
    if authority.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(refuse())
    }
}

/// A visitor, by the token that is the only key to their conversation.
pub struct Visitor {
    pub conversation: Conversation,
}

impl Visitor {
    pub async fn from_token(state: &AppState, token: &str) -> ApiResult<Self> {
        if TokenKind::of(token) != Some(TokenKind::Visitor) {
            return Err(ApiError::unauthorized("unknown visitor token"));
        }
        let conversation = state
            .runtime()
            .store()
            .conversation_by_visitor_token(&token_hash(token))
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown visitor token"))?;
        Ok(Visitor { conversation })
    }
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("send `Authorization: Bearer <visitor_token>`")
        })?;
        let ip = client_ip(parts);
        AppState::check_rate(&state.inner.ip_limiter, format!("ip:{ip}"))?;
        AppState::check_rate(
            &state.inner.widget_limiter,
            format!("visitor:{}", token_hash(token)),
        )?;
        Visitor::from_token(state, token).await
    }
}

pub fn role_from(text: &str) -> ApiResult<Role> {
    text.parse()
        .map_err(|e: baton_model::model::UnknownValue| ApiError::invalid(e.to_string()))
}
