//! Durable state behind one trait: signing keys now, revocations next.
//! SQLite is the default ([`SqliteStore`]); a PostgreSQL store for several
//! replicas implements the same trait.

mod sqlite;

use std::sync::Arc;

pub use sqlite::SqliteStore;

use crate::revoke::Entry;

#[cfg(test)]
mod tests {
    use super::longest_live_lifetime;

    #[test]
    fn a_lowered_max_ttl_keeps_the_longer_one_until_its_tokens_expire() {
        // A run with 1h started at 0; at 100 writ restarts with 5m.
        assert_eq!(
            longest_live_lifetime(&[(0, 3600)], 300, 100),
            (3600, vec![true])
        );
        // At 4000 another restart: tokens of the 1h run died by 100 + 3600.
        let (longest, alive) = longest_live_lifetime(&[(0, 3600), (100, 300)], 300, 4000);
        assert_eq!((longest, alive), (300, vec![false, true]));
        assert_eq!(longest_live_lifetime(&[], 900, 10), (900, vec![]));
    }
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no supported store.
    #[error("unsupported store url (expected sqlite://PATH)")]
    UnsupportedUrl,
    /// The database failed.
    #[error("store: {0}")]
    Database(#[from] sqlx::Error),
    /// A file operation around the database failed.
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
    /// The store's files could be read or replaced by other users.
    #[error("store: {0}")]
    Insecure(String),
    /// A stored row could not be read back.
    #[error("store: corrupt row: {0}")]
    Corrupt(String),
}

/// A signing key as kept in the store (private: the store file is 0600).
#[derive(Clone)]
pub struct StoredKey {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// `ES256` or `EdDSA`.
    pub alg: String,
    /// The private key, PKCS#8 DER.
    pub pkcs8: Vec<u8>,
    /// Seconds since the epoch.
    pub created_at: u64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// Durable state.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Every signing key, any order.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Adds a signing key, durably.
    async fn put_signing_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Records that a broker minting tokens of at most `max_ttl` seconds
    /// started at `now`, and returns the longest lifetime a token minted by
    /// it or by any earlier run may still have: lowering `tokens.max_ttl`
    /// does not shorten what was already issued.
    async fn record_token_lifetime(&self, max_ttl: u64, now: u64) -> Result<u64, StoreError>;
    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Appends a kill-switch entry durably (synced before returning); returns its `seq`.
    async fn append_revocation(&self, entry: &Entry) -> Result<u64, StoreError>;
    /// Marks `lifted_id` lifted and appends the `lift` entry, atomically; returns its `seq`.
    async fn lift_revocation(&self, lifted_id: &str, lift: &Entry) -> Result<u64, StoreError>;
    /// Deletes revocations of single tokens whose `exp` is before `before`:
    /// they can revoke nothing alive. Returns how many went.
    async fn forget_token_revocations(&self, before: u64) -> Result<u64, StoreError>;
    /// One entry by id.
    async fn revocation(&self, id: &str) -> Result<Option<Entry>, StoreError>;
    /// Entries with `seq > since`, ascending, at most `limit`.
    async fn revocations_since(&self, since: u64, limit: usize) -> Result<Vec<Entry>, StoreError>;
}

/// Runs as `(started_at, max_ttl)`, oldest first: which of them may still
/// have live tokens at `now`, and the longest lifetime among those and
/// `current`. A run's tokens were minted before the next run started, so
/// they live at most until that start plus its `max_ttl`.
pub fn longest_live_lifetime(runs: &[(u64, u64)], current: u64, now: u64) -> (u64, Vec<bool>) {
    let mut longest = current;
    let alive: Vec<bool> = runs
        .iter()
        .enumerate()
        .map(|(i, &(_, ttl))| {
            let ended_by = runs.get(i + 1).map_or(now, |&(next, _)| next);
            let alive = ended_by.saturating_add(ttl) > now;
            if alive {
                longest = longest.max(ttl);
            }
            alive
        })
        .collect();
    (longest, alive)
}

/// Opens the store a URL names, running migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
