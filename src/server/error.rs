//! Every refusal a client can see, mapped to RFC 6749 section 5.2 in one
//! place. Descriptions are safe text; the detail is in the log and the audit
//! record the `decision_id` finds.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::attest::AttestError;
use crate::policy::PolicyError;
use crate::token::{SigningError, TokenError};

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

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: malformed or missing parameter.
    InvalidRequest(String),
    /// 400: the subject token failed attestation.
    InvalidGrant(String),
    /// 400: the audience is not a known target.
    InvalidTarget(String),
    /// 400: malformed scope, or wider than the subject token allows.
    InvalidScope(String),
    /// 400: a grant type writ does not serve.
    UnsupportedGrantType,
    /// 400: a DPoP proof was refused (RFC 9449 section 7.1).
    InvalidDpopProof(String),
    /// 401: the caller did not authenticate.
    InvalidClient(String),
    /// 403: policy permitted no scope, or the kill switch blocks it.
    AccessDenied(String),
    /// 413: the body is larger than allowed.
    PayloadTooLarge,
    /// 404: no such resource (admin API).
    NotFound(String),
    /// 409: the resource is not in a state that allows this (admin API).
    Conflict(String),
    /// 429: the caller asked too often; `Retry-After` says when to come back.
    RateLimited {
        /// Why.
        why: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// 503: overload, timeout or a failing dependency.
    Unavailable(String),
}

impl Refusal {
    /// The RFC 6749 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_)
            | Self::PayloadTooLarge
            | Self::NotFound(_)
            | Self::Conflict(_) => "invalid_request",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::InvalidTarget(_) => "invalid_target",
            Self::InvalidScope(_) => "invalid_scope",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidDpopProof(_) => "invalid_dpop_proof",
            Self::InvalidClient(_) => "invalid_client",
            Self::AccessDenied(_) => "access_denied",
            Self::Unavailable(_) | Self::RateLimited { .. } => "temporarily_unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            Self::AccessDenied(_) => StatusCode::FORBIDDEN,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> String {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidGrant(d)
            | Self::InvalidTarget(d)
            | Self::InvalidScope(d)
            | Self::InvalidDpopProof(d)
            | Self::InvalidClient(d)
            | Self::AccessDenied(d)
            | Self::NotFound(d)
            | Self::Conflict(d)
            | Self::Unavailable(d)
            | Self::RateLimited { why: d, .. } => d.clone(),
            Self::UnsupportedGrantType => "grant_type is not supported".into(),
            Self::PayloadTooLarge => "request body is too large".into(),
        }
    }

    /// Pairs the refusal with the decision it belongs to.
    pub fn with_id(self, decision_id: impl Into<String>) -> ApiError {
        ApiError {
            refusal: self,
            decision_id: decision_id.into(),
        }
    }
}

impl From<AttestError> for Refusal {
    fn from(e: AttestError) -> Self {
        Self::InvalidGrant(format!("subject_token: {e}"))
    }
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Self {
        Self::InvalidGrant(format!("subject_token: {e}"))
    }
}

impl From<SigningError> for Refusal {
    fn from(_: SigningError) -> Self {
        Self::Unavailable("token could not be signed".into())
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        Self::Unavailable("the store is unavailable; nothing was changed".into())
    }
}

impl From<PolicyError> for Refusal {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::UnknownTarget => {
                Self::InvalidTarget("audience is not a known target".into())
            }
            PolicyError::Request(_) => Self::Unavailable("the decision could not be made".into()),
        }
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.refusal.code(),
            "error_description": self.refusal.description(),
            "decision_id": self.decision_id,
        });
        let mut resp = (self.refusal.status(), Json(body)).into_response();
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
            Refusal::RateLimited { retry_after, .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        resp
    }
}
