//! Checking writ's own tokens when they come back: as a subject token to be
//! narrowed, or at introspection. The checks are writ-proto's, the same
//! every SDK verifier applies; the broker adds only its keys, its clock and
//! its longest lifetime.

use std::sync::Arc;

use writ_proto::token::{self, Expected};
use writ_proto::txn::{self, TxnClaims};

use super::{AccessClaims, KeyRing, TokenError};
use crate::clock::Clock;

/// A writ token that verified: its claims, and the key that signed it
/// (the `kid` of its header, which the kill switch's `kid` selector
/// matches; the claims do not carry it).
#[derive(Debug, Clone)]
pub struct Verified {
    /// The claims.
    pub claims: AccessClaims,
    /// The signing key's id.
    pub kid: String,
}

/// A writ transaction token that verified: its claims and signing key.
#[derive(Debug, Clone)]
pub struct VerifiedTxn {
    /// The claims.
    pub claims: TxnClaims,
    /// The signing key's id.
    pub kid: String,
}

/// Verifies tokens this broker minted.
pub struct TokenVerifier {
    keys: Arc<KeyRing>,
    issuer: String,
    clock: Arc<dyn Clock>,
    max_lifetime: Option<u64>,
}

impl TokenVerifier {
    /// A verifier for tokens of `issuer` signed by keys in `keys`.
    pub fn new(keys: Arc<KeyRing>, issuer: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            keys,
            issuer: issuer.into(),
            clock,
            max_lifetime: None,
        }
    }

    /// Refuses tokens whose `exp - iat` exceeds `secs`: the longest lifetime
    /// writ could have minted. A longer one was signed with a stolen key.
    pub fn max_lifetime(mut self, secs: u64) -> Self {
        self.max_lifetime = Some(secs);
        self
    }

    /// Checks signature, `typ`, `iss` and validity window (no leeway: the
    /// clock is the broker's own); returns the claims and the signing key.
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let header = token::header(token)?;
        let snapshot = self.keys.snapshot();
        let (key, alg) = snapshot
            .verifying_key(&header.kid)
            .ok_or(TokenError::UnknownKey)?;
        let expected = Expected {
            issuer: &self.issuer,
            audience: None,
            now: self.clock.unix_now(),
            leeway: 0,
            max_lifetime: self.max_lifetime,
        };
        let claims = token::verify(token, &header, key, alg, &expected).inspect_err(|e| {
            if *e == TokenError::Lifetime {
                tracing::warn!(
                    "a validly signed writ token lives longer than writ mints: the signing key may be stolen"
                );
            }
        })?;
        Ok(Verified {
            claims,
            kid: header.kid,
        })
    }

    /// Checks a transaction token this broker minted for `trust_domain`,
    /// living at most `max_lifetime` seconds: signature, `typ`
    /// `txntoken+jwt`, `iss`, `aud`, validity window.
    pub fn verify_txn(
        &self,
        token: &str,
        trust_domain: &str,
        max_lifetime: u64,
    ) -> Result<VerifiedTxn, TokenError> {
        let header = txn::header(token)?;
        let snapshot = self.keys.snapshot();
        let (key, alg) = snapshot
            .verifying_key(&header.kid)
            .ok_or(TokenError::UnknownKey)?;
        let expected = txn::Expected {
            issuer: &self.issuer,
            trust_domain,
            now: self.clock.unix_now(),
            leeway: 0,
            max_lifetime: Some(max_lifetime),
        };
        let claims = txn::verify(token, &header, key, alg, &expected)?;
        Ok(VerifiedTxn {
            claims,
            kid: header.kid,
        })
    }
}
