//! Signing keys: generated with ring at first start, kept (PKCS#8) in the
//! [`KeyStore`] so restarts keep them, published as a JWKS.

use std::sync::Arc;

use jsonwebtoken::jwk::{CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use writ_proto::jwk;

use super::SigningError;
use super::key_store::{KeyStore, StoredKey};
use crate::config::SigningAlgorithm;
use crate::durable::StoreError;

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A parsed private key, ready to sign on the hot path.
pub struct SigningKey {
    kid: String,
    alg: SigningAlgorithm,
    pair: Pair,
    rng: SystemRandom,
    /// The public key as published, with `kid`, `alg` and `use`.
    jwk: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

impl SigningKey {
    /// Generates a new key; returns it with its PKCS#8 encoding for the store.
    pub fn generate(alg: SigningAlgorithm) -> Result<(Self, Vec<u8>), SigningError> {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            SigningAlgorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            SigningAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| SigningError)?;
        let key = Self::from_pkcs8(alg, pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    /// Parses a stored PKCS#8 key.
    pub fn from_pkcs8(alg: SigningAlgorithm, pkcs8: &[u8]) -> Result<Self, SigningError> {
        let rng = SystemRandom::new();
        let pair = match alg {
            SigningAlgorithm::ES256 => Pair::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                    .map_err(|_| SigningError)?,
            ),
            SigningAlgorithm::EdDSA => {
                Pair::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| SigningError)?)
            }
        };
        let public = match &pair {
            Pair::Ecdsa(p) => jwk::p256(p.public_key().as_ref()).ok_or(SigningError)?,
            Pair::Ed25519(p) => jwk::ed25519(p.public_key().as_ref()),
        };
        let kid = jwk::thumbprint(&public).map_err(|_| SigningError)?;
        let jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(match alg {
                    SigningAlgorithm::ES256 => KeyAlgorithm::ES256,
                    SigningAlgorithm::EdDSA => KeyAlgorithm::EdDSA,
                }),
                key_id: Some(kid.clone()),
                ..CommonParameters::default()
            },
            algorithm: public.algorithm,
        };
        Ok(Self {
            kid,
            alg,
            pair,
            rng,
            jwk,
        })
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.alg
    }

    /// Signs `message`, returning the raw JWS signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        match &self.pair {
            Pair::Ecdsa(p) => p
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SigningError),
            Pair::Ed25519(p) => Ok(p.sign(message).as_ref().to_vec()),
        }
    }

    /// The public JWK, with `kid`, `alg` and `use`.
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// A jsonwebtoken key that verifies this key's signatures.
    fn decoding_key(&self) -> Result<(DecodingKey, Algorithm), SigningError> {
        let key = DecodingKey::from_jwk(&self.jwk).map_err(|_| SigningError)?;
        let alg = match self.alg {
            SigningAlgorithm::ES256 => Algorithm::ES256,
            SigningAlgorithm::EdDSA => Algorithm::EdDSA,
        };
        Ok((key, alg))
    }
}

/// Why the key ring could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored key could not be parsed, or a new one generated.
    #[error("signing key {kid}: {source}")]
    Key {
        /// Which key.
        kid: String,
        /// Why.
        source: SigningError,
    },
}

/// The active signing key and every public key still needed to verify.
pub struct KeyRing {
    active: Arc<SigningKey>,
    verifying: Vec<(String, DecodingKey, Algorithm)>,
    jwks: bytes::Bytes,
}

impl KeyRing {
    /// Loads keys from `store`, generating the first key of `alg` if none
    /// exists. Keys superseded less than `max_ttl_secs` ago stay published.
    pub async fn open(
        store: &dyn KeyStore,
        alg: SigningAlgorithm,
        now: u64,
        max_ttl_secs: u64,
    ) -> Result<Self, KeyRingError> {
        let mut stored = store.signing_keys().await?;
        stored.sort_by_key(|k| k.created_at);
        if !stored.iter().any(|k| k.alg == alg.as_str()) {
            let (key, pkcs8) = SigningKey::generate(alg).map_err(|source| KeyRingError::Key {
                kid: "new".into(),
                source,
            })?;
            let row = StoredKey {
                kid: key.kid().to_owned(),
                alg: alg.as_str().to_owned(),
                pkcs8,
                created_at: now,
            };
            store.put_signing_key(&row).await?;
            tracing::info!(
                kid = key.kid(),
                alg = alg.as_str(),
                "generated a new signing key"
            );
            stored.push(row);
        }
        let mut keys = Vec::new();
        for (i, row) in stored.iter().enumerate() {
            let key_alg = match row.alg.as_str() {
                "ES256" => SigningAlgorithm::ES256,
                "EdDSA" => SigningAlgorithm::EdDSA,
                _ => continue,
            };
            let superseded_at = stored.get(i + 1).map(|next| next.created_at);
            let retired = superseded_at.is_some_and(|t| now >= t.saturating_add(max_ttl_secs));
            let key = SigningKey::from_pkcs8(key_alg, &row.pkcs8).map_err(|source| {
                KeyRingError::Key {
                    kid: row.kid.clone(),
                    source,
                }
            })?;
            keys.push((key, retired));
        }
        let active_idx = keys
            .iter()
            .rposition(|(k, _)| k.algorithm() == alg)
            .ok_or_else(|| KeyRingError::Key {
                kid: "active".into(),
                source: SigningError,
            })?;
        let mut verifying = Vec::new();
        let mut published = Vec::new();
        for (i, (key, retired)) in keys.iter().enumerate() {
            if *retired && i != active_idx {
                continue;
            }
            let (dk, a) = key.decoding_key().map_err(|source| KeyRingError::Key {
                kid: key.kid().to_owned(),
                source,
            })?;
            verifying.push((key.kid().to_owned(), dk, a));
            published.push(key.public_jwk().clone());
        }
        let active = Arc::new(keys.swap_remove(active_idx).0);
        let jwks = serde_json::to_vec(&JwkSet { keys: published }).unwrap_or_default();
        Ok(Self {
            active,
            verifying,
            jwks: jwks.into(),
        })
    }

    /// The key new tokens are signed with.
    pub fn active(&self) -> Arc<SigningKey> {
        self.active.clone()
    }

    /// The JWKS document, serialized once.
    pub fn jwks_json(&self) -> bytes::Bytes {
        self.jwks.clone()
    }

    /// The verification key for `kid`.
    pub fn verifying_key(&self, kid: &str) -> Option<(&DecodingKey, Algorithm)> {
        self.verifying
            .iter()
            .find(|(k, _, _)| k == kid)
            .map(|(_, dk, a)| (dk, *a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The published form: the public members, `kid` (the RFC 7638
    /// thumbprint), `alg` and `use`, and nothing else.
    #[test]
    fn a_published_key_has_its_public_members_kid_alg_and_use() {
        for (alg, members) in [
            (
                SigningAlgorithm::ES256,
                &["alg", "crv", "kid", "kty", "use", "x", "y"][..],
            ),
            (
                SigningAlgorithm::EdDSA,
                &["alg", "crv", "kid", "kty", "use", "x"][..],
            ),
        ] {
            let (key, _) = SigningKey::generate(alg).unwrap();
            let published = serde_json::to_value(key.public_jwk()).unwrap();
            let mut names: Vec<&str> = published
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            names.sort_unstable();
            assert_eq!(names, members, "{published}");
            assert_eq!(published["kid"], key.kid());
            assert_eq!(published["alg"], alg.as_str());
            assert_eq!(published["use"], "sig");
            let (kty, crv) = match alg {
                SigningAlgorithm::ES256 => ("EC", "P-256"),
                SigningAlgorithm::EdDSA => ("OKP", "Ed25519"),
            };
            assert_eq!(
                (&published["kty"], &published["crv"]),
                (&json!(kty), &json!(crv))
            );
            // The kid is the thumbprint of the public members alone.
            let mut public = published.clone();
            for m in ["kid", "alg", "use"] {
                public.as_object_mut().unwrap().remove(m);
            }
            let public: Jwk = serde_json::from_value(public).unwrap();
            assert_eq!(jwk::thumbprint(&public).unwrap(), key.kid());
            assert!(matches!(published["x"], Value::String(_)));
        }
    }
}
