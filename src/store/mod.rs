//! Durable state behind one trait: signing keys now, revocations next.
//! SQLite is the default ([`SqliteStore`]); a PostgreSQL store for several
//! replicas implements the same trait.

mod sqlite;

use std::sync::Arc;

pub use sqlite::SqliteStore;

use crate::revoke::Entry;

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
    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Appends a kill-switch entry durably (synced before returning); returns its `seq`.
    async fn append_revocation(&self, entry: &Entry) -> Result<u64, StoreError>;
    /// Marks `lifted_id` lifted and appends the `lift` entry, atomically; returns its `seq`.
    async fn lift_revocation(&self, lifted_id: &str, lift: &Entry) -> Result<u64, StoreError>;
    /// One entry by id.
    async fn revocation(&self, id: &str) -> Result<Option<Entry>, StoreError>;
    /// Entries with `seq > since`, ascending, at most `limit`.
    async fn revocations_since(&self, since: u64, limit: usize) -> Result<Vec<Entry>, StoreError>;
}

/// Opens the store a URL names, running migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
