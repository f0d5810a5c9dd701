//! Errors that say whether retrying can help.

/// Why a token could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker refused: policy, kill switch, bad attestation or a bad
    /// request. Retrying the same request will not help.
    #[error("refused by the broker: {error}: {description} (decision {decision_id})")]
    Denied {
        /// RFC 6749 error code, e.g. `access_denied`.
        error: String,
        /// The broker's explanation.
        description: String,
        /// Finds the broker's audit record.
        decision_id: String,
    },
    /// The broker could not be reached or was overloaded; retrying may help.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The attestation (e.g. the service-account token file) could not be read.
    #[error("attestation unavailable: {0}")]
    Attestation(String),
    /// The broker answered something that is not writ's protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Misconfiguration (e.g. a bad URL or CA file).
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Attestation(_))
    }
}

/// Why a presented token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a JWT, or not a writ access token (`typ` is not `at+jwt`).
    #[error("token is malformed")]
    Malformed,
    /// The `alg` is not one writ signs with, or does not match the key.
    #[error("signing algorithm is not allowed")]
    Algorithm,
    /// No key of the broker has this `kid` (after a refetch).
    #[error("signing key is unknown")]
    UnknownKey,
    /// The signature does not verify.
    #[error("signature is invalid")]
    Signature,
    /// `iss` is not the broker.
    #[error("token was issued by another issuer")]
    Issuer,
    /// `aud` is not this resource server.
    #[error("token is for another audience")]
    Audience,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not yet valid")]
    NotYetValid,
    /// A required scope is missing.
    #[error("token lacks scope {0}")]
    MissingScope(String),
    /// No token was presented (no `Authorization` header with the `Bearer`
    /// or `DPoP` scheme).
    #[error("no access token was presented")]
    Missing,
    /// The token is bound to a key (`cnf`) the request did not prove: no
    /// DPoP proof, another key's proof, no or another client certificate,
    /// or the DPoP scheme with an unbound token.
    #[error("token is bound to a key the request did not prove")]
    KeyBinding,
    /// The DPoP proof itself was refused (`invalid_dpop_proof`).
    #[error("{0}")]
    DpopProof(crate::dpop::DpopError),
    /// The kill switch revoked it.
    #[error("token was revoked (entry {0})")]
    Revoked(String),
    /// The revocation feed has been silent longer than allowed: fail closed.
    #[error("revocation feed is stale; refusing until it is heard again")]
    FeedStale,
}
