//! Minted tokens: RFC 9068 JWT access tokens signed by a key writ generated
//! and kept durably.
//!
//! `keys` holds the signing keys and the public JWKS (a snapshot every
//! replica refreshes from the store), `lifecycle` is the pure rule of which
//! key signs and which are published when, `seal` encrypts private keys at
//! rest, `mint` signs claims on the hot path with the parsed ring key,
//! `verify` checks writ's own tokens when they come back (narrowing,
//! introspection). `key_store` is the trait
//! the key ring keeps its keys (and past token lifetimes) through,
//! [`KeyStore`], which the store implements: token owns the trait and never
//! imports the store.

mod key_store;
mod keys;
pub mod lifecycle;
mod mint;
mod seal;
mod verify;

pub use key_store::{KeyStore, StoredKey, forgettable_through, longest_live_lifetime};
pub use keys::{
    KeyInfo, KeyRing, KeyRingError, KeySettings, KeySnapshot, REFRESH_EVERY, Revoked, Signer,
    SigningKey,
};
pub use lifecycle::{KeyState, Transition};
pub use mint::{MintRequest, Minted, Minter, TxnMintRequest};
pub use seal::{Kek, KekError};
pub use verify::{TokenVerifier, Verified, VerifiedTxn};
pub use writ_proto::claims::{AccessClaims, ActorChain, Confirmation};

/// How many tokens a token may derive from (its `ancestry`): narrowing and
/// delegation past this ask for a fresh token instead, so tokens stay small.
pub const MAX_ANCESTRY: usize = 16;

pub use writ_proto::token::TokenError;

/// Why a key could not be made or a token could not be signed: an internal
/// fault (no randomness, a key ring cannot parse), never the caller's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing failed")]
pub struct SigningError;
