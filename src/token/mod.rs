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

pub use claims::{AccessClaims, act_chain};
pub use keys::{KeyRing, KeyRingError, SigningKey};
pub use mint::{MintRequest, Minted, Minter};
pub use verify::TokenVerifier;

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
    /// Key generation or signing failed (an internal fault).
    #[error("signing failed")]
    Signing,
}
