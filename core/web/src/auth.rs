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
/// left to the CSRF token and bearer rules.
///
/// The served origin is `BATON_PUBLIC_URL` when set; otherwise the request's
/// own `Host`, or the host a reverse proxy says the browser asked for
/// (`X-Forwarded-Host`, `Forwarded: host=`): a cross-site page cannot set
/// those on a browser's request without a CORS preflight, which Baton's staff
/// endpoints never grant. Default ports are ignored (`x.com` is `x.com:443`
/// over https).
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
    let (scheme, authority) = split_origin(origin).ok_or_else(refuse)?;
    let default = default_port(scheme);
    let sent = authority_parts(authority, default).ok_or_else(refuse)?;
    if let Some(public) = public_origin {
        let matches = split_origin(public).is_some_and(|(s, a)| {
            s.eq_ignore_ascii_case(scheme)
                && authority_parts(a, default_port(s)) == Some(sent.clone())
        });
        return if matches { Ok(()) } else { Err(refuse()) };
    }
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut served: Vec<&str> = vec![];
    served.extend(header_text("host"));
    served.extend(header_text("x-forwarded-host").and_then(|v| v.split(',').next()));
    if let Some(forwarded) = header_text("forwarded") {
        served.extend(
            forwarded
                .split([';', ','])
                .filter_map(|kv| kv.trim().split_once('='))
                .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.trim_matches('"')),
        );
    }
    if served
        .iter()
        .any(|a| authority_parts(a.trim(), default).as_ref() == Some(&sent))
    {
        Ok(())
    } else {
        Err(refuse())
    }
}

/// `https://x.com:8443` → `("https", "x.com:8443")`; nothing with a path.
fn split_origin(origin: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = origin.trim_end_matches('/').split_once("://")?;
    let scheme_ok = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    (scheme_ok && !rest.is_empty() && !rest.contains(['/', '?', '#', '@']))
        .then_some((scheme, rest))
}

fn default_port(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    }
}

/// A host and port, lower-cased, with the scheme's port when none is written.
fn authority_parts(authority: &str, default: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        (format!("[{host}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (authority.to_owned(), default),
        }
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_served_origin_is_compared_without_default_ports() {
        let ok = |pairs: &[(&'static str, &str)], public: Option<&str>| {
            check_origin(&headers(pairs), public).is_ok()
        };
        assert!(ok(
            &[
                ("origin", "http://127.0.0.1:8080"),
                ("host", "127.0.0.1:8080")
            ],
            None
        ));
        assert!(ok(
            &[("origin", "https://x.com"), ("host", "X.com:443")],
            None
        ));
        assert!(ok(
            &[
                ("origin", "https://x.com"),
                ("host", "127.0.0.1:8080"),
                ("x-forwarded-host", "x.com")
            ],
            None
        ));
        assert!(ok(
            &[
                ("origin", "https://x.com"),
                ("host", "backend"),
                ("forwarded", "for=1.2.3.4;host=x.com;proto=https")
            ],
            None
        ));
        assert!(ok(
            &[("origin", "https://x.com")],
            Some("https://x.com:443/")
        ));
        assert!(ok(
            &[("origin", "http://[::1]:8080"), ("host", "[::1]:8080")],
            None
        ));
        assert!(
            ok(&[("host", "x.com")], None),
            "no Origin: left to the CSRF rules"
        );
        assert!(!ok(
            &[("origin", "https://evil.example"), ("host", "x.com")],
            None
        ));
        assert!(!ok(
            &[("origin", "http://x.com"), ("host", "x.com")],
            Some("https://x.com")
        ));
        assert!(!ok(&[("origin", "null"), ("host", "x.com")], None));
        assert!(!ok(
            &[("origin", "https://x.com.evil.example"), ("host", "x.com")],
            None
        ));
        assert!(!ok(
            &[("origin", "https://x.com:8443"), ("host", "x.com")],
            None
        ));
    }
}
