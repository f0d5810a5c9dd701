//! # writ-proto: the rules writ's broker and its SDK must agree on, once
//!
//! The broker (`writ`) and the workload SDK (`writ-sdk`) both depend on this
//! crate and neither on the other for these rules, so a fix lands in both.
//! In the order a presented token meets them:
//!
//! - [`token`]: checking a writ access token (header, signature, issuer,
//!   audience, validity window, lifetime) into typed [`claims`].
//! - [`binding`]: the key-binding rule: a token with `cnf` only from the
//!   holder of its key, proven by [`dpop`] or a client certificate.
//! - [`dpop`]: DPoP (RFC 9449) proof verification, the [`dpop::ReplayStore`]
//!   it remembers proofs in (and the in-memory one), and the key that signs
//!   proofs.
//! - [`txn`]: checking a transaction token (draft-ietf-oauth-transaction-tokens),
//!   the same way but never in place of an access token.
//! - [`revocation`]: kill-switch entries in wire form and the one matcher.
//! - [`sse`]: decoding the revocation feed's Server-Sent Events, bounded.
//! - [`jws`]: compact JWS segments, before verification.
//! - [`jwk`]: public keys as JWKs and their RFC 7638 thumbprints.
//! - [`time`]: times on the wire.
//! - [`id`]: random identifiers, refused rather than guessable.

pub mod binding;
pub mod claims;
pub mod dpop;
pub mod id;
pub mod jwk;
pub mod jws;
pub mod revocation;
pub mod sse;
pub mod time;
pub mod token;
pub mod txn;

pub use claims::{AccessClaims, ActorChain, AttestationKind, Confirmation, PrincipalType};
