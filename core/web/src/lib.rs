//! Baton's public HTTP and WebSocket API (API.md), built with axum.
//!
//! [`router`] is the whole server as a `Router`, so tests can drive it with
//! `oneshot` or bind it to `127.0.0.1:0`. Handlers are thin: they
//! authenticate, parse, call the runtime and shape JSON.
//!
//! Architecture invariants: request bodies, query strings and error shapes
//! live only in this crate; handlers never write to the store directly for
//! anything that touches a conversation (that is the runtime's job); every
//! error goes out as `{"error": {"code", "message"}}` and none leaks internals.

mod admin;
mod assets;
mod auth;
mod error;
mod events;
mod extract;
mod metrics;
mod serve;
mod settings;
mod staff;
mod throttle;
mod widget;
mod work;

pub use error::{ApiError, ApiResult};
pub use metrics::Metrics;
pub use serve::{HEADER_READ_TIMEOUT, serve};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use baton_runtime::Runtime;
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde_json::json;
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::sync::broadcast;

type KeyedLimiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    runtime: Runtime,
    metrics: Metrics,
    widget_limiter: KeyedLimiter,
    /// Per client IP, shared by every visitor behind it.
    ip_limiter: KeyedLimiter,
    staff_limiter: KeyedLimiter,
    login_limiter: KeyedLimiter,
    /// Failed sign-ins per account (the limiter above is per address).
    login_throttle: throttle::LoginThrottle,
    /// Argon2 with bounded memory and concurrency.
    passwords: baton_runtime::auth::PasswordPool,
    /// Credentials and users revoked on this node: open streams resting on
    /// them close at once (other nodes' streams notice at their next check).
    revoked: broadcast::Sender<auth::Revoked>,
    /// Turns true when the node stops: open streams end (WebSockets with
    /// 1001 "going away"), so that clients reconnect elsewhere at once.
    stopping: tokio::sync::watch::Sender<bool>,
    options: WebOptions,
}

impl StateInner {
    /// Forgets every limiter key whose bucket is full again (it would allow
    /// a burst anyway) and sign-in records past their time.
    fn prune(&self) {
        for limiter in [
            &self.widget_limiter,
            &self.ip_limiter,
            &self.staff_limiter,
            &self.login_limiter,
        ] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.login_throttle.prune(std::time::Instant::now());
    }
}

/// Options the binary sets on the web layer.
#[derive(Clone, Debug, Default)]
pub struct WebOptions {
    /// Mark cookies `Secure` (serve behind HTTPS).
    pub secure_cookies: bool,
    /// Where plugins are installed (`BATON_PLUGINS_DIR`), listed on the admin page.
    pub plugins_dir: Option<std::path::PathBuf>,
    /// The origin browsers reach Baton at (`BATON_PUBLIC_URL`, e.g.
    /// `https://support.example.com`); without it, a request's own `Host`.
    pub public_origin: Option<String>,
    /// A bearer token that opens `/metrics` (`BATON_METRICS_TOKEN`); admins'
    /// credentials open it too.
    pub metrics_token: Option<String>,
}

impl AppState {
    pub fn new(runtime: Runtime, options: WebOptions) -> Self {
        let limits = runtime.config().limits.clone();
        let quota = |per_second: u32, burst: u32| {
            Quota::per_second(NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN))
        };
        let (revoked, _) = broadcast::channel(64);
        let state = Self {
            inner: Arc::new(StateInner {
                metrics: Metrics::new(),
                widget_limiter: RateLimiter::keyed(quota(
                    limits.widget_messages_per_second,
                    limits.widget_burst,
                )),
                ip_limiter: RateLimiter::keyed(quota(
                    limits.widget_ip_requests_per_second,
                    limits.widget_ip_burst,
                )),
                staff_limiter: RateLimiter::keyed(quota(
                    limits.staff_requests_per_second,
                    limits.staff_burst,
                )),
                // Slows password guessing to a trickle per address.
                login_limiter: RateLimiter::keyed(
                    Quota::per_minute(NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN))
                        .allow_burst(NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN)),
                ),
                login_throttle: throttle::LoginThrottle::default(),
                passwords: baton_runtime::auth::PasswordPool::for_this_machine(),
                revoked,
                stopping: tokio::sync::watch::channel(false).0,
                options,
                runtime,
            }),
        };
        state.prune_in_background();
        state
    }

    /// Drops the rate limiters' and the sign-in throttle's stale keys every
    /// minute, so that a stream of new addresses or tokens cannot grow them
    /// without end. Stops when the state is dropped.
    fn prune_in_background(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.prune();
            }
        });
    }

    /// Ends every open event stream and WebSocket: the node is stopping.
    pub fn stop_streams(&self) {
        self.inner.stopping.send_replace(true);
    }

    fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }

    fn public_origin(&self) -> Option<&str> {
        self.inner.options.public_origin.as_deref()
    }

    fn revoke(&self, what: auth::Revoked) {
        let _ = self.inner.revoked.send(what);
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    fn check_rate(limiter: &KeyedLimiter, key: String) -> ApiResult<()> {
        limiter.check_key(&key).map_err(|not_until| {
            let wait =
                not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()));
            ApiError::rate_limited(wait.as_secs() + 1)
        })
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let max_body = state.runtime().config().limits.max_body_bytes;
    // Visitor endpoints answer any origin (see `observe`): the widget runs on other sites.
    let widget = Router::new()
        .route("/config", get(widget::config))
        .route("/sessions", post(widget::create_session))
        .route(
            "/messages",
            get(widget::list_messages).post(widget::post_message),
        )
        .route("/actions", post(widget::post_action))
        .route("/contact", post(widget::leave_message))
        .route("/ws", get(widget::ws));
    let api = Router::new()
        .nest("/widget", widget)
        .route("/auth/login", post(staff::login))
        .route("/auth/logout", post(staff::logout))
        .route("/me", get(staff::me))
        .route("/me/presence", put(staff::set_presence))
        .route("/tokens", get(staff::list_tokens).post(staff::create_token))
        .route("/tokens/{id}", delete(staff::revoke_token))
        .route("/users", get(staff::list_users).post(staff::create_user))
        .route(
            "/users/{id}",
            patch(staff::update_user).delete(staff::remove_user),
        )
        .route("/agents", get(staff::list_agents))
        .route("/bots", get(settings::list_bots))
        .route("/bots/{id}", put(settings::update_bot))
        .route("/channels", get(settings::list_channels))
        .route("/plugins", get(settings::list_plugins))
        .route(
            "/plugins/{id}",
            get(settings::get_plugin).patch(settings::switch_plugin),
        )
        .route("/conversations", get(staff::list_conversations))
        .route("/conversations/{id}", get(staff::get_conversation))
        .route("/conversations/{id}/claim", post(staff::claim))
        .route("/conversations/{id}/messages", post(staff::post_message))
        .route(
            "/conversations/{id}/messages/{message_id}/retry",
            post(staff::retry_delivery),
        )
        .route("/conversations/{id}/handback", post(staff::handback))
        .route("/conversations/{id}/resolve", post(staff::resolve))
        .route("/conversations/{id}/unclaim", post(staff::unclaim))
        .route("/conversations/{id}/escalate", post(staff::escalate))
        .route("/conversations/{id}/transfer", post(staff::transfer))
        .route("/conversations/{id}/typing", post(staff::typing))
        .route("/conversations/{id}/tags", put(staff::set_tags))
        .route("/conversations/{id}/actions", get(work::action_runs))
        .route("/tasks", get(work::list_tasks))
        .route("/tasks/{id}", patch(work::update_task))
        .route("/notifications", get(work::list_notifications))
        .route("/notifications/read", post(work::read_notifications))
        .route("/departments", get(work::list_departments))
        .route("/bots/{id}/knowledge", get(work::list_knowledge))
        .route(
            "/bots/{id}/knowledge/{entry}",
            put(work::put_knowledge).delete(work::delete_knowledge),
        )
        .route("/events", get(events::stream))
        .route(
            "/webhooks",
            get(admin::list_webhooks).post(admin::create_webhook),
        )
        .route("/webhooks/{id}", delete(admin::delete_webhook))
        .route("/webhooks/{id}/deliveries", get(admin::deliveries))
        .route("/reports/handovers", get(admin::handover_report))
        .route("/reports/handovers.csv", get(admin::handover_report_csv))
        .route("/openapi.json", get(openapi));

    let mut channels = Router::new();
    for channel in state.runtime().channels() {
        let ingest: Arc<dyn baton_channel::Ingest> = Arc::new(state.runtime().clone());
        if let Some(routes) = channel.routes(ingest) {
            channels = channels.nest(&format!("/{}", channel.kind()), routes);
        }
    }

    Router::new()
        .route("/", get(assets::landing))
        .route("/widget.js", get(assets::widget_script))
        .route("/chat/{bot}", get(assets::chat_page))
        .route("/inbox", get(assets::inbox_page))
        .route("/assets/{file}", get(assets::asset))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::render_for_staff))
        .nest("/api/v1", api.nest("/channels", channels.with_state(())))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// A WebSocket's read buffer and write batch, in bytes. Chat frames are
/// small; tungstenite's default (128 KiB) is zeroed on every read and held
/// by every idle socket, which at 10,000 idle widgets is over a GiB. A
/// bigger frame grows its buffer as it needs.
pub(crate) const WS_BUFFER: usize = 4 * 1024;

/// The pages' content security policy. Only the chat page may be framed (by
/// any site: customers embed it in an `<iframe>`); every other page refuses
/// to be, so that no site can overlay the inbox to trick an agent's clicks.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";
const CSP_EMBEDDABLE: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors *; base-uri 'none'; form-action 'self'; object-src 'none'";

/// Counts requests and sets the security headers every response carries.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let widget = req.uri().path().starts_with("/api/v1/widget/");
    let embeddable = req.uri().path().starts_with("/chat/");
    let preflight = widget && req.method() == axum::http::Method::OPTIONS;
    let mut response = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    if widget {
        widget_cors(preflight, &mut response);
    }
    state.metrics().http_response(response.status().as_u16());
    let headers = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    if embeddable {
        set(headers, header::CONTENT_SECURITY_POLICY, CSP_EMBEDDABLE);
    } else {
        set(headers, header::CONTENT_SECURITY_POLICY, CSP);
        set(headers, header::X_FRAME_OPTIONS, "DENY");
    }
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    response
}

/// CORS for the visitor endpoints: any origin, bearer tokens only (no cookies).
/// Answered here, before routing, so that preflights never meet a 405.
fn widget_cors(preflight: bool, response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
}

/// `/metrics` alone, without credentials, for `BATON_METRICS_LISTEN`: an
/// address only the monitoring system reaches.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::render))
        .fallback(not_found)
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.runtime().store().ping().await {
        Ok(()) => axum::Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint: {}", uri.path()),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_keys_of_addresses_gone_quiet_are_dropped() {
        let limiter: KeyedLimiter = RateLimiter::keyed(
            Quota::per_second(NonZeroU32::new(1000).unwrap())
                .allow_burst(NonZeroU32::new(1).unwrap()),
        );
        for i in 0..500 {
            let _ = limiter.check_key(&format!("ip:10.0.{}.{}", i / 256, i % 256));
        }
        assert_eq!(limiter.len(), 500);
        std::thread::sleep(std::time::Duration::from_millis(20));
        limiter.retain_recent();
        assert_eq!(limiter.len(), 0);
    }
}
