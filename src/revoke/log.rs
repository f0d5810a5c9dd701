//! Where kill-switch entries are kept durably: the [`RevocationLog`] the
//! [`KillSwitch`](super::KillSwitch) writes through, loads from and
//! follows, and where the replicas sharing it say how far they have
//! applied it. The store implements it (`crate::store`); the kill switch
//! never names a database.

use std::sync::Weak;

use tokio::sync::Notify;
use writ_proto::revocation::Entry;

use crate::durable::StoreError;

/// The durable, ordered log of kill-switch entries. Every entry gets a
/// `seq` that is never reused, so followers resume from the last one seen.
#[async_trait::async_trait]
pub trait RevocationLog: Send + Sync {
    /// Appends an entry durably (synced before returning); returns its `seq`.
    async fn append(&self, entry: &Entry) -> Result<u64, StoreError>;
    /// Marks `lifted_id` lifted and appends the `lift` entry, atomically;
    /// returns the lift's `seq`, or `None` (and appends nothing) when the
    /// entry was lifted already, e.g. by another replica a moment before.
    async fn lift(&self, lifted_id: &str, lift: &Entry) -> Result<Option<u64>, StoreError>;
    /// Entries with `seq > since`, ascending, at most `limit`.
    async fn since(&self, since: u64, limit: usize) -> Result<Vec<Entry>, StoreError>;
    /// One entry by id.
    async fn get(&self, id: &str) -> Result<Option<Entry>, StoreError>;
    /// Deletes revocations of single tokens whose `exp` is before `before`:
    /// they can revoke nothing alive. Returns how many went.
    async fn forget_token_revocations(&self, before: u64) -> Result<u64, StoreError>;

    /// Wakes `wake` whenever another replica may have appended, for as long
    /// as `wake` lives (PostgreSQL: `LISTEN`). A store that only this
    /// process writes does nothing: its own writes wake the follower.
    /// Followers poll as well, so a lost wake-up only delays.
    fn watch(&self, wake: Weak<Notify>);

    /// Records that replica `replica_id` is alive and has applied every
    /// entry up to `applied_seq`.
    async fn heartbeat(&self, replica_id: &str, applied_seq: u64) -> Result<(), StoreError>;

    /// Forgets replica `replica_id`: it is shutting down.
    async fn leave(&self, replica_id: &str) -> Result<(), StoreError>;

    /// Every replica that has sent a heartbeat and not left, with how long
    /// ago the store last heard of it (by the store's own clock, so replicas'
    /// clocks need not agree).
    async fn replicas(&self) -> Result<Vec<ReplicaStatus>, StoreError>;
}

/// A replica's progress through the log, as the store last heard it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// `server.replica_id`.
    pub replica_id: String,
    /// The last `seq` it had applied.
    pub applied_seq: u64,
    /// Milliseconds since its last heartbeat.
    pub silent_for_ms: u64,
}
