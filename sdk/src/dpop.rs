//! DPoP (RFC 9449): a client proves possession of a key with a JWT it signs
//! per request; a token bound to that key (`cnf.jkt`) is useless without it.
//!
//! Both halves come from `writ-proto`, so what the SDK signs is exactly what
//! writ's endpoints and the [`Verifier`](crate::Verifier) accept:
//!
//! - [`DpopKey`] is the client side: a key generated in memory, never
//!   written anywhere, that signs one proof per request.
//! - [`check`] and [`ReplayCache`] (the in-memory [`ReplayStore`]) are the
//!   server side: the same check writ's own endpoints run, used by the
//!   [`Verifier`](crate::Verifier) of resource servers.

pub use writ_proto::dpop::{
    CheckedProof, DpopError, DpopKey, Expected, KeyError, MAX_AGE_SECS, MAX_PROOF_BYTES,
    MAX_SKEW_SECS, ProofHeaderError, ReplayCache, ReplayError, ReplayStore, access_token_hash,
    check, single_proof, verify,
};
pub use writ_proto::jwk::thumbprint;

/// Seconds since the epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl From<KeyError> for crate::Error {
    /// A key that cannot be made or cannot sign is a local problem, not the
    /// broker's: [`Error::Config`](crate::Error::Config), as before.
    fn from(e: KeyError) -> Self {
        Self::Config(e.to_string())
    }
}
