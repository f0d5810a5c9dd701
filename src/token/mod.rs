//! Minted tokens: RFC 9068 JWT access tokens signed by a key writ generated
//! and kept in the store.
//!
//! `keys` holds the signing key and the public JWKS, `mint` signs claims on
//! the hot path with the parsed ring key, `verify` checks writ's own tokens
//! when they come back (narrowing, introspection).

mod claims;
mod keys;
mod mint;
mod verify;

pub use claims::{AccessClaims, act_chain, act_issuers};
pub use keys::{KeyRing, KeyRingError, SigningKey};
pub use mint::{MintRequest, Minted, Minter};
pub use verify::TokenVerifier;

/// How many tokens a token may derive from (its `ancestry`): narrowing and
/// delegation past this ask for a fresh token instead, so tokens stay small.
pub const MAX_ANCESTRY: usize = 16;

/// Why a token could not be minted or a writ token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS with a JSON header and claims.
    #[error("token is malformed")]
    Malformed,
    /// `typ` is not `at+jwt`.
    #[error("token is not a writ access token")]
    WrongType,
    /// The `kid` is not one of writ's keys.
    #[error("token was not signed by this broker")]
    UnknownKey,
    /// The signature does not verify.
    #[error("signature is invalid")]
    BadSignature,
    /// `iss` is not this broker.
    #[error("token was issued by another broker")]
    WrongIssuer,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not yet valid")]
    NotYetValid,
    /// `exp - iat` is longer than writ mints.
    #[error("token lives longer than this broker issues tokens")]
    Lifetime,
    /// Key generation or signing failed (an internal fault).
    #[error("signing failed")]
    Signing,
}
