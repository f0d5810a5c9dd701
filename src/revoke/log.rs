//! Where kill-switch entries are kept durably: the [`RevocationLog`] the
//! [`KillSwitch`](super::KillSwitch) writes through and loads from. The
//! store implements it (`crate::store`); the kill switch never names a
//! database.

use writ_proto::revocation::Entry;

use crate::durable::StoreError;

/// The durable, ordered log of kill-switch entries. Every entry gets a
/// `seq` that is never reused, so followers resume from the last one seen.
#[async_trait::async_trait]
pub trait RevocationLog: Send + Sync {
    /// Appends an entry durably (synced before returning); returns its `seq`.
    async fn append(&self, entry: &Entry) -> Result<u64, StoreError>;
    /// Marks `lifted_id` lifted and appends the `lift` entry, atomically;
    /// returns the lift's `seq`.
    async fn lift(&self, lifted_id: &str, lift: &Entry) -> Result<u64, StoreError>;
    /// Entries with `seq > since`, ascending, at most `limit`.
    async fn since(&self, since: u64, limit: usize) -> Result<Vec<Entry>, StoreError>;
    /// One entry by id.
    async fn get(&self, id: &str) -> Result<Option<Entry>, StoreError>;
    /// Deletes revocations of single tokens whose `exp` is before `before`:
    /// they can revoke nothing alive. Returns how many went.
    async fn forget_token_revocations(&self, before: u64) -> Result<u64, StoreError>;
}
