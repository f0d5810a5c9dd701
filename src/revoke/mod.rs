//! The kill switch: revoke every token of a workload, an agent, a target or
//! everything, and block new ones.
//!
//! The entries and the matcher on the hot path (a lock-free index) are
//! writ-proto's, shared with every SDK verifier; `entry` parses admin
//! input, `switch` is the service that makes entries durable and feeds
//! them to followers.

mod entry;
mod switch;

pub use entry::RevokeRequest;
pub use switch::{KillSwitch, LiftOutcome, PAGE};
pub use writ_proto::revocation::{
    EXPIRED_TOKEN_GRACE, Entry, EntryKind, MAX_VALUE_BYTES, MintFacts, RevocationIndex, Selector,
    TokenFacts,
};
