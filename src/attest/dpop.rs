//! DPoP (RFC 9449) at the broker: the proof check itself lives in the SDK
//! ([`writ_sdk::dpop`]), so writ's endpoints and the resource servers using
//! the SDK's verifier refuse exactly the same proofs.

pub use writ_sdk::dpop::{
    CheckedProof, DpopError, Expected, ReplayCache, ReplayError, check, thumbprint, verify,
};
