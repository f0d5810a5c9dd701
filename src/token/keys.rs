//! Signing keys: generated with ring at first start, kept (PKCS#8) in the
//! [`KeyStore`] so restarts keep them, published as a JWKS.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

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
        let mut key = Self {
            kid: String::new(),
            alg,
            pair,
            rng,
        };
        key.kid = thumbprint(&key.public_members());
        Ok(key)
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

    /// The public JWK members in RFC 7638 order (for the thumbprint).
    fn public_members(&self) -> Value {
        match &self.pair {
            Pair::Ecdsa(p) => {
                // Uncompressed point: 0x04 || x || y.
                let point = p.public_key().as_ref();
                let (x, y) = point
                    .get(1..)
                    .unwrap_or_default()
                    .split_at(point.len().saturating_sub(1) / 2);
                json!({"crv": "P-256", "kty": "EC", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
            }
            Pair::Ed25519(p) => {
                json!({"crv": "Ed25519", "kty": "OKP", "x": URL_SAFE_NO_PAD.encode(p.public_key().as_ref())})
            }
        }
    }

    /// The public JWK, with `kid`, `alg` and `use`.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.public_members();
        if let Some(o) = jwk.as_object_mut() {
            o.insert("kid".into(), self.kid.clone().into());
            o.insert("alg".into(), self.alg.as_str().into());
            o.insert("use".into(), "sig".into());
        }
        jwk
    }

    /// A jsonwebtoken key that verifies this key's signatures.
    fn decoding_key(&self) -> Result<(DecodingKey, Algorithm), SigningError> {
        let members = self.public_members();
        let s = |k: &str| {
            members
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match self.alg {
            SigningAlgorithm::ES256 => Ok((
                DecodingKey::from_ec_components(&s("x"), &s("y")).map_err(|_| SigningError)?,
                Algorithm::ES256,
            )),
            SigningAlgorithm::EdDSA => Ok((
                DecodingKey::from_ed_components(&s("x")).map_err(|_| SigningError)?,
                Algorithm::EdDSA,
            )),
        }
    }
}

fn thumbprint(members: &Value) -> String {
    // serde_json writes object keys in sorted order, as RFC 7638 requires.
    let canonical = members.to_string();
    URL_SAFE_NO_PAD.encode(crate::digest::sha256(canonical.as_bytes()))
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
        let mut jwks = Vec::new();
        for (i, (key, retired)) in keys.iter().enumerate() {
            if *retired && i != active_idx {
                continue;
            }
            let (dk, a) = key.decoding_key().map_err(|source| KeyRingError::Key {
                kid: key.kid().to_owned(),
                source,
            })?;
            verifying.push((key.kid().to_owned(), dk, a));
            jwks.push(key.public_jwk());
        }
        let active = Arc::new(keys.swap_remove(active_idx).0);
        let jwks = serde_json::to_vec(&json!({ "keys": jwks })).unwrap_or_default();
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
