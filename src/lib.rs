//! # writ: a policy-enforcing token broker
//!
//! A workload or an AI agent proves what it is, asks for a token for one
//! target with some scopes, Cedar decides per scope, and writ mints a JWT
//! that lives minutes, or refuses with an RFC 6749 error. The modules, in
//! the order a token request meets them, each with one job:
//!
//! - [`server`]: HTTPS and the Unix socket, routes, limits; handlers
//!   extract, call [`grant`], render.
//! - [`grant`]: the token request as plain functions: parse, attest, kill
//!   switch, decide, lifetime and binding, mint; one outcome for the audit.
//! - [`attest`]: the catalog of attestation kinds, evidence to principal.
//! - [`revoke`]: the kill switch: admin input, durable entries (through the
//!   [`revoke::RevocationLog`] it owns), the feed.
//! - [`policy`]: Cedar policies loaded, sliced by target, decided per scope.
//! - [`approval`]: grants a permit makes wait for a person's approval
//!   (through the [`approval::ApprovalLog`] it owns).
//! - [`token`]: signing keys (through the [`token::KeyStore`] it owns),
//!   minting, checking writ's own tokens again.
//! - [`audit`]: the hash-chained decision log and metrics.
//! - [`inventory`]: the principals the decision log saw, what each was
//!   granted and denied, and who owns it.
//! - [`rightsize`]: the grants policy permits that the decision log shows
//!   unused, with the policy change that removes them.
//! - [`store`]: durable state (SQLite), implementing the traits its users
//!   own; their shared error is [`durable::StoreError`].
//! - [`cli`]: the command line; `main.rs` only calls it.
//! - [`config`], [`certs`], [`model`], [`clock`], [`digest`], [`durable`]: the
//!   configuration, dev and test certificates, the typed vocabulary
//!   (principal, target, scope, lifetime), time, hashing, the store error.
//!
//! The rules the broker and every SDK verifier must agree on (typed
//! claims, token checks, key binding, DPoP, the revocation matcher) live
//! once in the `writ-proto` crate.
//!
//! ```text
//! client ──TLS──▶ server ──▶ grant: parse ─▶ attest ─▶ revoke ─▶ policy ─▶ token ──▶ audit ──▶ response
//! ```

pub mod approval;
pub mod attest;
pub mod audit;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod config;
pub mod digest;
pub mod durable;
pub mod grant;
pub mod inventory;
pub mod model;
pub mod policy;
pub mod revoke;
pub mod rightsize;
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

/// Asks the kernel not to back this process with transparent huge pages.
///
/// mimalloc (the binary's allocator) advises huge pages on its arenas, so a
/// few touched kilobytes made the kernel commit 2 MiB each: half of the
/// broker's resident memory was such pages, mostly empty. The binary calls
/// this first thing, and so does the in-process benchmark, so the two run on
/// the same memory. A kernel without the switch changes nothing.
pub fn prefer_small_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
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
