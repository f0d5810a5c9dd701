//! DPoP (RFC 9449) at the broker: the proof check lives in `writ-proto`
//! ([`writ_proto::dpop`]), which the SDK's resource-server verifier uses
//! too, so both refuse exactly the same proofs.

pub use writ_proto::dpop::{
    CheckedProof, DpopError, Expected, ReplayCache, ReplayError, ReplayStore, check, verify,
};
