//! Checking writ's own tokens when they come back: as a subject token to be
//! narrowed, or at introspection.

use std::sync::Arc;

use jsonwebtoken::Validation;

use super::{AccessClaims, KeyRing, TokenError};
use crate::attest::MAX_TOKEN_BYTES;
use crate::clock::Clock;

/// Verifies tokens this broker minted.
pub struct TokenVerifier {
    keys: Arc<KeyRing>,
    issuer: String,
    clock: Arc<dyn Clock>,
    max_lifetime: u64,
}

impl TokenVerifier {
    /// A verifier for tokens of `issuer` signed by keys in `keys`.
    pub fn new(keys: Arc<KeyRing>, issuer: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            keys,
            issuer: issuer.into(),
            clock,
            max_lifetime: u64::MAX,
        }
    }

    /// Refuses tokens whose `exp - iat` exceeds `secs`: the longest lifetime
    /// writ could have minted. A longer one was signed with a stolen key.
    pub fn max_lifetime(mut self, secs: u64) -> Self {
        self.max_lifetime = secs;
        self
    }

    /// Checks signature, `typ`, `iss` and validity window; returns the claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.typ.as_deref() != Some("at+jwt") {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let (key, alg) = self.keys.verifying_key(kid).ok_or(TokenError::UnknownKey)?;
        if header.alg != alg {
            return Err(TokenError::BadSignature);
        }
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &validation).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            }
        })?;
        let claims = data.claims;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        let now = self.clock.unix_now();
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now {
            return Err(TokenError::NotYetValid);
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime {
            tracing::warn!(
                jti = %claims.jti,
                lifetime = claims.exp.saturating_sub(claims.iat),
                "a validly signed writ token lives longer than writ mints: the signing key may be stolen"
            );
            return Err(TokenError::Lifetime);
        }
        Ok(claims)
    }
}
