//! The one error type of the HTTP API. It never leaks internals: a store
//! failure is logged with its cause and answered with a generic 500.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_model::{AgentRef, TransitionError};
use serde_json::{Value, json};
use tracing::error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields beside `code` and `message` (e.g. `claimed_by`).
    pub extra: Option<(&'static str, Value)>,
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; slow down and try again shortly",
            )
        }
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; it has been logged",
        )
    }

    pub fn already_claimed(by: &AgentRef) -> Self {
        Self {
            extra: Some(("claimed_by", json!({"id": by.id, "name": by.name}))),
            ..Self::new(
                StatusCode::CONFLICT,
                "already_claimed",
                format!("Already claimed by {}", by.name),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let (Some((key, value)), Some(obj)) = (self.extra, error.as_object_mut()) {
            obj.insert(key.to_owned(), value);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<baton_runtime::Error> for ApiError {
    fn from(e: baton_runtime::Error) -> Self {
        use baton_runtime::Error as E;
        match e {
            E::NotFound(what) => ApiError::not_found(what),
            E::Transition(TransitionError::AlreadyClaimed { by }) => ApiError::already_claimed(&by),
            E::Transition(t @ TransitionError::Invalid { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition", t.to_string())
            }
            E::Invalid(m) => ApiError::invalid(m),
            E::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            E::Forbidden(m) => ApiError::forbidden(m),
            E::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            E::Store(s) => s.into(),
        }
    }
}

impl From<baton_store::Error> for ApiError {
    fn from(e: baton_store::Error) -> Self {
        if let baton_store::Error::Conflict(what) = e {
            return ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            );
        }
        error!(error = %e, "storage failure");
        ApiError::internal()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => ApiError::invalid(body_text(&e.body_text())),
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::bad_request(format!("malformed JSON: {}", body_text(&e.body_text())))
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "request body is too large",
                )
            }
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(format!(
            "invalid query string: {}",
            body_text(&r.body_text())
        ))
    }
}

/// axum's rejection texts start with a generic sentence; keep the useful part.
fn body_text(text: &str) -> String {
    text.split_once(": ")
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_else(|| text.to_owned())
}
