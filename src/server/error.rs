//! Every refusal a client can see, rendered in one place: the RFC 6749
//! section 5.2 body of a [`Refusal`] (which the grant defines, so both can
//! use it), its HTTP status and headers, and the `decision_id` that finds
//! its audit record. Descriptions are safe text; the detail is in the log
//! and the audit record.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::grant::Refusal;

/// `text` with control characters escaped (`\n`, `\u{1b}`...), for log
/// lines: a value from a request can then never start a forged line or
/// drive the operator's terminal.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// The HTTP status of a refusal.
fn status(refusal: &Refusal) -> StatusCode {
    match refusal {
        Refusal::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        Refusal::AccessDenied(_) => StatusCode::FORBIDDEN,
        Refusal::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        Refusal::Conflict(_) => StatusCode::CONFLICT,
        Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::RateLimited { .. } | Refusal::SlowDown { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A refusal with its `decision_id`, rendered as RFC 6749 JSON.
#[derive(Debug)]
pub struct ApiError {
    /// What went wrong.
    pub refusal: Refusal,
    /// Finds the audit record.
    pub decision_id: String,
}

impl ApiError {
    /// Pairs a refusal with the decision it belongs to.
    pub fn new(refusal: Refusal, decision_id: impl Into<String>) -> Self {
        Self {
            refusal,
            decision_id: decision_id.into(),
        }
    }

    /// `refusal` under a fresh decision id; without one, the 503 of
    /// [`new_decision_id`].
    pub fn fresh(refusal: Refusal) -> Self {
        match new_decision_id() {
            Ok(id) => Self::new(refusal, id),
            Err(unavailable) => unavailable,
        }
    }
}

/// A fresh id for one decision (128 random bits, hex). Without system
/// randomness there is none, and the request is refused with a 503 that
/// names no decision (the failure is logged): two decisions sharing an id
/// would make the audit trail find the wrong record.
pub fn new_decision_id() -> Result<String, ApiError> {
    writ_proto::id::random_id().map_err(|e| {
        tracing::error!(error = %e, "no decision id: the request is refused");
        ApiError::new(
            Refusal::Unavailable("no randomness for a decision id".into()),
            String::new(),
        )
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "error": self.refusal.code(),
            "error_description": self.refusal.description(),
            "decision_id": self.decision_id,
        });
        if let Refusal::AuthorizationPending { approval_id, .. } = &self.refusal {
            body["approval_id"] = json!(approval_id);
            body["interval"] = json!(crate::approval::POLL_INTERVAL_SECS);
        }
        let mut resp = (status(&self.refusal), Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if matches!(self.refusal, Refusal::InvalidClient(_)) {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        match self.refusal {
            Refusal::Unavailable(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Refusal::RateLimited { retry_after, .. } | Refusal::SlowDown { retry_after, .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        resp
    }
}
