//! Prometheus metrics at `GET /metrics`.

use crate::AppState;
use crate::auth::{Staff, bearer};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use baton_model::SenderKind;
use baton_runtime::auth::constant_time_eq;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SenderLabel {
    sender: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    responses: Family<StatusLabel, Counter>,
    messages: Family<SenderLabel, Counter>,
    claims: Family<OutcomeLabel, Counter>,
    sockets: Gauge,
}

/// Counts one open socket until dropped.
pub struct SocketGuard(Gauge);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("baton");
        let responses = Family::<StatusLabel, Counter>::default();
        let messages = Family::<SenderLabel, Counter>::default();
        let claims = Family::<OutcomeLabel, Counter>::default();
        let sockets = Gauge::default();
        registry.register(
            "http_responses",
            "HTTP responses by status class",
            responses.clone(),
        );
        registry.register(
            "messages",
            "Messages received from visitors and agents",
            messages.clone(),
        );
        registry.register("claims", "Claim attempts by outcome", claims.clone());
        registry.register(
            "open_streams",
            "Open WebSocket and event-stream connections",
            sockets.clone(),
        );
        Self {
            registry: Arc::new(registry),
            responses,
            messages,
            claims,
            sockets,
        }
    }

    pub fn http_response(&self, status: u16) {
        let class = format!("{}xx", status / 100);
        self.responses.get_or_create(&StatusLabel { class }).inc();
    }

    pub fn message(&self, sender: SenderKind) {
        self.messages
            .get_or_create(&SenderLabel {
                sender: sender.to_string(),
            })
            .inc();
    }

    pub fn claim(&self, won: bool) {
        let outcome = if won { "won" } else { "refused" }.to_owned();
        self.claims.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn ws_open(&self) -> SocketGuard {
        self.sockets.inc();
        SocketGuard(self.sockets.clone())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `/metrics` on the main address: for `Authorization: Bearer
/// $BATON_METRICS_TOKEN`, or an owner's or admin's session or API token.
pub async fn render_for_staff(State(state): State<AppState>, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    let by_token = match (&state.inner.options.metrics_token, bearer(&parts.headers)) {
        (Some(expected), Some(sent)) => constant_time_eq(expected.as_bytes(), sent.as_bytes()),
        _ => false,
    };
    if !by_token {
        let staff = match Staff::from_request_parts(&mut parts, &state).await {
            Ok(staff) => staff,
            Err(e) => return e.into_response(),
        };
        if let Err(e) = staff.require_admin() {
            return e.into_response();
        }
    }
    render(State(state)).await
}

pub async fn render(State(state): State<AppState>) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &state.metrics().registry).is_err() {
        return crate::ApiError::internal().into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
