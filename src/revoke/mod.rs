//! The kill switch: revoke every token of a workload, an agent, a target or
//! everything, and block new ones.
//!
//! The entries and the matcher on the hot path (a lock-free index) are
//! writ-proto's, shared with every SDK verifier; `entry` parses admin
//! input, `switch` is the service that makes entries durable and feeds
//! them to followers, and `log` is the trait it makes them durable
//! through ([`RevocationLog`]), which the store implements: the kill
//! switch owns the trait and never imports the store.

mod entry;
mod log;
mod switch;

pub use entry::RevokeRequest;
pub use log::RevocationLog;
pub use switch::{KillSwitch, LiftOutcome, PAGE};
pub use writ_proto::revocation::{
    EXPIRED_TOKEN_GRACE, Entry, EntryKind, MAX_VALUE_BYTES, MintFacts, RevocationIndex, Selector,
    TokenFacts,
};
