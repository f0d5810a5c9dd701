//! The kill switch: revoke every token of a workload, an agent, a target or
//! everything, and block new ones.
//!
//! The entries and the matcher on the hot path (a lock-free index) are
//! writ-proto's, shared with every SDK verifier; `entry` parses admin
//! input, `switch` is the service that makes entries durable, follows the
//! log every replica shares and feeds entries to followers, `freshness`
//! says how old this replica's view is (too old: it mints nothing), and
//! `log` is the trait it makes them durable through ([`RevocationLog`]),
//! which the store implements: the kill switch owns the trait and never
//! imports the store.

mod entry;
mod freshness;
mod log;
mod switch;

pub use entry::RevokeRequest;
pub use freshness::{Freshness, Stale};
pub use log::{ReplicaStatus, RevocationLog};
pub use switch::{FOLLOW_POLL, KillSwitch, LiftOutcome, PAGE, Propagation};
pub use writ_proto::revocation::{
    EXPIRED_TOKEN_GRACE, Entry, EntryKind, MAX_VALUE_BYTES, MintFacts, RevocationIndex, Selector,
    TokenFacts,
};
