//! # writ-sdk
//!
//! The workload side of writ, a policy-enforcing token broker.
//!
//! - [`TokenSource`]: proves what the workload is (a projected
//!   service-account token, or any attestation you supply), exchanges it for
//!   a short-lived token for one target, and keeps that token fresh: it
//!   refreshes at about 80 % of the token's life, with one exchange in flight
//!   however many callers wait, and jittered exponential backoff on failure.
//! - [`Verifier`]: for resource servers. Verifies writ tokens from the
//!   broker's JWKS (found through RFC 8414 metadata), checks `typ`, `iss`,
//!   `aud`, time and required scopes, and refuses tokens the kill switch has
//!   revoked: it follows the broker's revocation feed and fails closed when
//!   the feed has been silent too long.
//! - With the `axum` feature, [`layer::RequireToken`] guards routes.
//!
//! ```no_run
//! # async fn run() -> Result<(), writ_sdk::Error> {
//! use writ_sdk::{Broker, FileAttestation, TokenSource};
//! let broker = Broker::new("https://writ.internal:8443")?;
//! let tokens = TokenSource::builder(broker, "payments-db")
//!     .scopes(["read"])
//!     .attestation(FileAttestation::kubernetes("/var/run/secrets/tokens/writ"))
//!     .build();
//! let token = tokens.token().await?; // fresh, cached, shared
//! # Ok(()) }
//! ```

mod attestation;
mod binding;
mod broker;
pub mod dpop;
mod error;
mod feed;
pub mod revocations;
mod source;
mod verifier;

#[cfg(feature = "axum")]
pub mod layer;

pub use attestation::{Attestation, AttestationSource, FileAttestation, StaticAttestation};
pub use binding::{Presented, Scheme};
pub use broker::{Broker, Metadata};
pub use dpop::DpopKey;
pub use error::{Error, VerifyError};
pub use source::{Authorization, Token, TokenSource, TokenSourceBuilder};
pub use verifier::{FeedAuth, Verified, Verifier, VerifierBuilder};
pub use writ_proto::txn::{HEADER as TXN_TOKEN_HEADER, TxnClaims};
