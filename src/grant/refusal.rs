//! Every refusal a client can see, as RFC 6749 section 5.2 names it: the
//! `error` code and a safe `error_description`. The grant returns them and
//! the server renders them (statuses, headers and the `decision_id` are
//! `server::error`'s); living here, below both, neither imports the other.
//!
//! Descriptions are safe text; the detail is in the log and the audit
//! record the `decision_id` finds.

use crate::attest::AttestError;
use crate::attest::dpop::{ProofReplayError, ReplayError};
use crate::policy::PolicyError;
use crate::token::{SigningError, TokenError};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: malformed or missing parameter.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// 400: the subject token failed attestation.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// 400: the audience is not a known target.
    #[error("invalid_target: {0}")]
    InvalidTarget(String),
    /// 400: malformed scope, or wider than the subject token allows.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// 400: a grant type writ does not serve.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// 400: a DPoP proof was refused (RFC 9449 section 7.1).
    #[error("invalid_dpop_proof: {0}")]
    InvalidDpopProof(String),
    /// 401: the caller did not authenticate.
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// 403: policy permitted no scope, or the kill switch blocks it.
    #[error("access_denied: {0}")]
    AccessDenied(String),
    /// 413: the body is larger than allowed.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// 404: no such resource (admin API).
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: the resource is not in a state that allows this (admin API).
    #[error("conflict: {0}")]
    Conflict(String),
    /// 429: the caller asked too often; `Retry-After` says when to come back.
    #[error("rate limited: {why}")]
    RateLimited {
        /// Why.
        why: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// 429 `slow_down`: a token request beyond `limits.per_principal` or
    /// `limits.per_target`; `Retry-After` says when to come back.
    #[error("slow_down: {why}")]
    SlowDown {
        /// Why.
        why: String,
        /// Seconds to wait (at least 1).
        retry_after: u64,
    },
    /// 503: overload, timeout or a failing dependency.
    #[error("temporarily_unavailable: {0}")]
    Unavailable(String),
    /// 400: the grant waits for a person with `role` to approve it (RFC
    /// 8628 section 3.5's error, as CONTRACT section 10 models approvals
    /// on it); the client retries with `approval_id`.
    #[error("authorization_pending: approval {approval_id} waits for {role}")]
    AuthorizationPending {
        /// What the client retries with.
        approval_id: String,
        /// Who may approve.
        role: String,
    },
    /// 400: an approval lapsed before it was used.
    #[error("expired_token: {0}")]
    ExpiredToken(String),
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
            Self::AuthorizationPending { .. } => "authorization_pending",
            Self::ExpiredToken(_) => "expired_token",
            Self::SlowDown { .. } => "slow_down",
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
            | Self::ExpiredToken(d)
            | Self::RateLimited { why: d, .. }
            | Self::SlowDown { why: d, .. } => d.clone(),
            Self::AuthorizationPending { role, .. } => format!(
                "the grant waits for approval by {role}; retry with approval_id every {} s",
                crate::approval::POLL_INTERVAL_SECS
            ),
            Self::UnsupportedGrantType => "grant_type is not supported".into(),
            Self::PayloadTooLarge => "request body is too large".into(),
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

impl From<crate::durable::StoreError> for Refusal {
    fn from(e: crate::durable::StoreError) -> Self {
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

/// A proof the replay cache did not take: a replay is an invalid proof; a
/// full cache is writ's problem, so the client retries.
impl From<ProofReplayError> for Refusal {
    fn from(e: ProofReplayError) -> Self {
        match e {
            ProofReplayError::Replay(e) => e.into(),
            ProofReplayError::Store(e) => {
                tracing::warn!(error = %e, "DPoP proof refused: the shared replay record is unreachable");
                Self::Unavailable(
                    "DPoP proofs cannot be checked for replay right now; retry".into(),
                )
            }
        }
    }
}

impl From<ReplayError> for Refusal {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replay => Self::InvalidDpopProof(e.to_string()),
            ReplayError::Full { .. } => {
                tracing::warn!(
                    "DPoP replay cache is full; refusing new proofs until old ones expire"
                );
                Self::Unavailable(e.to_string())
            }
            _ => Self::Unavailable(e.to_string()),
        }
    }
}
