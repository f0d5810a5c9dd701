//! What every trait over durable state answers when it fails: [`StoreError`].
//!
//! The traits belong to the modules that use them
//! ([`crate::revoke::RevocationLog`], [`crate::token::KeyStore`]) and
//! [`crate::store`] implements them, so `store` sits above their owners. The
//! error they share cannot live in `store`, or `revoke` and `token` would
//! import the module that imports them (a cycle); it lives here, below all
//! three, and `store` re-exports it.

/// Why durable state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no supported store.
    #[error("unsupported store url (expected sqlite://PATH or postgres://USER@HOST/DB)")]
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
