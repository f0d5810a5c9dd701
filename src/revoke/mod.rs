//! The kill switch: revoke every token of a workload, an agent, a target or
//! everything, and block new ones.
//!
//! `entry` is the data (selectors, parsing admin input), `index` the
//! lock-free in-memory check on the hot path, `switch` the service that
//! makes entries durable and feeds them to followers.

mod entry;
mod index;
mod switch;

pub use entry::{EXPIRED_TOKEN_GRACE, Entry, EntryKind, MAX_VALUE_BYTES, RevokeRequest, Selector};
pub use index::{MintFacts, RevocationIndex, TokenFacts};
pub use switch::{KillSwitch, LiftOutcome, PAGE};
