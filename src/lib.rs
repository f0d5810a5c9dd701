//! # writ: a policy-enforcing token broker
//!
//! A workload or an AI agent proves what it is ([`attest`]), asks for a token
//! for one target with some scopes, Cedar decides per scope ([`policy`]), and
//! writ mints a JWT that lives minutes ([`token`]), or refuses with an RFC 6749
//! error. [`grant`] is that request as plain functions, in flow order: parse,
//! attest, kill switch ([`revoke`], on the hot path), decide, lifetime and
//! binding, mint. Every decision is written to a hash-chained log
//! ([`audit`]). Durable state sits behind traits owned by the modules that
//! use it ([`revoke::RevocationLog`], [`token::KeyStore`]), which [`store`]
//! implements; the error they share is [`durable::StoreError`]. [`server`]
//! puts it all behind HTTPS and only extracts, calls [`grant`] and renders.
//!
//! ```text
//! client ──TLS──▶ server ──▶ grant: parse ─▶ attest ─▶ revoke ─▶ policy ─▶ token ──▶ audit ──▶ response
//! ```
//!
//! The public interface is:

pub mod attest;
pub mod audit;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod config;
pub mod digest;
pub mod durable;
pub mod grant;
pub mod model;
pub mod policy;
pub mod revoke;
pub mod server;
pub mod store;
pub mod token;

pub use attest::Attested;
pub use clock::{Clock, SystemClock};
pub use config::Config;
pub use model::{Principal, Scope, Scopes, TargetId, Ttl};
pub use policy::Decision;
pub use token::Minted;

/// Installs ring as the process-wide rustls crypto provider.
///
/// writ keeps exactly one crypto library in the binary; this is the only
/// place a provider is chosen. Calling it twice is harmless.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The configuration of the in-module property tests (issue 11, item 18):
/// `PROPTEST_CASES` cases when set (a longer run on demand), else `default`;
/// failing cases are reported, not persisted to files.
#[cfg(test)]
pub(crate) fn proptest_config(default: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}
