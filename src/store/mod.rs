//! Implementations only: durable state for the traits its users own.
//!
//! [`RevocationLog`] belongs to the kill switch ([`crate::revoke`]),
//! [`KeyStore`] to the key ring ([`crate::token`]), [`ApprovalLog`] to
//! approvals ([`crate::approval`]); this module implements
//! them ([`SqliteStore`], one SQLite file, the default; [`PostgresStore`],
//! one database shared by several replicas) and adds only what the server
//! itself asks of a store, [`Store::ping`]. `store` sits above the
//! modules whose traits it implements and none of them imports it; the
//! error they share is [`crate::durable::StoreError`], re-exported here.

mod approvals;
mod postgres;
mod postgres_audit;
mod postgres_proofs;
mod rows;
mod sqlite;

use std::sync::Arc;

pub use crate::durable::StoreError;
pub use postgres::PostgresStore;
pub use postgres_audit::{PostgresAuditSink, StoredChain, audit_chains};
pub use sqlite::SqliteStore;

use crate::approval::ApprovalLog;
use crate::attest::dpop::SharedProofLog;
use crate::revoke::RevocationLog;
use crate::token::KeyStore;

/// One store behind every trait: what [`open`] returns. Its users take only
/// their own part (an `Arc<dyn Store>` coerces to `Arc<dyn RevocationLog>`
/// or `&dyn KeyStore`).
#[async_trait::async_trait]
pub trait Store: RevocationLog + KeyStore + ApprovalLog {
    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Where DPoP proofs are recorded for every replica, when several may
    /// share this store; `None` when one process owns it and its memory
    /// suffices.
    fn shared_proofs(self: Arc<Self>) -> Option<Arc<dyn SharedProofLog>>;
}

/// Opens the store a URL names (`sqlite://PATH`, or `postgres://` /
/// `postgresql://` with the default `store.max_connections`), running
/// migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, crate::config::StoreConfig::default().max_connections).await
}

/// Like [`open`], with a PostgreSQL pool of at most `max_connections`.
pub async fn open_with(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if is_postgres(url) {
        Ok(Arc::new(PostgresStore::open(url, max_connections).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// Whether `url` names a PostgreSQL database: a store several replicas may
/// share, which also keeps their decision logs.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}
