//! Implementations only: durable state for the traits its users own.
//!
//! [`RevocationLog`] belongs to the kill switch ([`crate::revoke`]),
//! [`KeyStore`] to the key ring ([`crate::token`]); this module implements
//! them ([`SqliteStore`], one SQLite file, the default) and adds only what
//! the server itself asks of a store, [`Store::ping`]. A PostgreSQL store for
//! several replicas implements the same traits. `store` sits above the
//! modules whose traits it implements and none of them imports it; the
//! error they share is [`crate::durable::StoreError`], re-exported here.

mod sqlite;

use std::sync::Arc;

pub use crate::durable::StoreError;
pub use sqlite::SqliteStore;

use crate::revoke::RevocationLog;
use crate::token::KeyStore;

/// One store behind every trait: what [`open`] returns. Its users take only
/// their own part (an `Arc<dyn Store>` coerces to `Arc<dyn RevocationLog>`
/// or `&dyn KeyStore`).
#[async_trait::async_trait]
pub trait Store: RevocationLog + KeyStore {
    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the store a URL names, running migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
