//! The client side of DPoP: a key that signs one proof per request, in the
//! exact form [`check`](super::check) accepts. It lives beside the check so
//! the two cannot drift; the SDK's `TokenSource` and `writ token --dpop`
//! both use it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use super::access_token_hash;
use crate::jwk;

/// Why a DPoP key could not be made, or could not sign a proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// Seconds since the epoch, for a proof's `iat`.
#[allow(clippy::disallowed_methods)] // a client's proof carries the real time
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A DPoP key: an ES256 key pair generated in memory for this process. The
/// private half never leaves it; tokens bound to it die with the process,
/// which is what a thief holding only the token file finds.
pub struct DpopKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    /// The public JWK, serialized once: it goes into every proof's header.
    header_prefix: String,
    thumbprint: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("jkt", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let failed = |what: &str| KeyError(format!("DPoP key: {what}"));
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| failed("generation failed"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| failed("rejected by ring"))?;
        let jwk = jwk::p256(pair.public_key().as_ref())
            .ok_or_else(|| failed("unexpected public key encoding"))?;
        let thumbprint = jwk::thumbprint(&jwk).map_err(|_| failed("thumbprint"))?;
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        Ok(Self {
            pair,
            rng,
            header_prefix: URL_SAFE_NO_PAD.encode(header.to_string()),
            thumbprint,
        })
    }

    /// The RFC 7638 thumbprint of the public key: the `cnf.jkt` of tokens
    /// bound to it.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A proof for one request: `method` and `uri` as the server will see
    /// them (query and fragment are dropped), and, when presenting an access
    /// token, that token (its hash goes into `ath`).
    pub fn proof(
        &self,
        method: &str,
        uri: &str,
        access_token: Option<&str>,
    ) -> Result<String, KeyError> {
        let mut jti = [0u8; 16];
        self.rng
            .fill(&mut jti)
            .map_err(|_| KeyError("DPoP proof: no randomness".into()))?;
        let iat = unix_now();
        let htu = uri.split(['?', '#']).next().unwrap_or(uri);
        let mut claims = json!({
            "htm": method,
            "htu": htu,
            "iat": iat,
            "jti": URL_SAFE_NO_PAD.encode(jti),
        });
        if let (Some(token), Some(map)) = (access_token, claims.as_object_mut()) {
            map.insert("ath".into(), Value::String(access_token_hash(token)));
        }
        let input = format!(
            "{}.{}",
            self.header_prefix,
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| KeyError("DPoP proof: signing failed".into()))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        CheckedProof, DpopError, Expected, MAX_AGE_SECS, ReplayCache, ReplayError, ReplayStore,
        verify,
    };
    use super::*;

    fn replay() -> ReplayCache {
        ReplayCache::new(100)
    }

    fn now() -> u64 {
        unix_now()
    }

    #[test]
    fn a_key_signs_proofs_the_verifier_accepts_once() {
        let key = DpopKey::generate().unwrap();
        let proof = key
            .proof("GET", "https://rs.example/orders?page=2", Some("tok"))
            .unwrap();
        let expected = Expected {
            method: "GET",
            uri: "https://rs.example/orders",
            now: now(),
            access_token: Some("tok"),
        };
        let cache = replay();
        assert_eq!(verify(&proof, &expected, &cache).unwrap(), key.thumbprint());
        assert_eq!(verify(&proof, &expected, &cache), Err(DpopError::Replay));
    }

    /// A replay store other than the in-memory cache (as a store shared by
    /// replicas will be): what it answers is what `verify` answers, and it
    /// is asked to remember the proof until the last second it verifies.
    #[test]
    fn verify_remembers_through_any_replay_store() {
        struct Remote(std::sync::Mutex<Vec<([u8; 16], u64)>>);
        impl ReplayStore for Remote {
            fn remember(&self, proof: &CheckedProof, _now: u64) -> Result<(), ReplayError> {
                let mut seen = self.0.lock().unwrap();
                if seen.iter().any(|(key, _)| key == proof.replay_key()) {
                    return Err(ReplayError::Full { retry_after: 7 });
                }
                seen.push((*proof.replay_key(), proof.valid_until()));
                Ok(())
            }
        }
        let key = DpopKey::generate().unwrap();
        let proof = key.proof("POST", "https://rs.example/a", None).unwrap();
        let expected = Expected {
            method: "POST",
            uri: "https://rs.example/a",
            now: now(),
            access_token: None,
        };
        let remote = Remote(std::sync::Mutex::new(Vec::new()));

        assert_eq!(
            verify(&proof, &expected, &remote).unwrap(),
            key.thumbprint()
        );
        let until = remote.0.lock().unwrap()[0].1;
        assert!((now()..=now() + MAX_AGE_SECS).contains(&until), "{until}");
        assert_eq!(
            verify(&proof, &expected, &remote),
            Err(DpopError::Busy { retry_after: 7 })
        );
    }

    #[test]
    fn a_proof_for_another_token_or_request_is_refused() {
        let key = DpopKey::generate().unwrap();
        let proof = key
            .proof("GET", "https://rs.example/a", Some("tok"))
            .unwrap();
        let base = Expected {
            method: "GET",
            uri: "https://rs.example/a",
            now: now(),
            access_token: Some("tok"),
        };
        let cases = [
            (
                Expected {
                    access_token: Some("other"),
                    ..base
                },
                DpopError::AccessTokenHash,
            ),
            (
                Expected {
                    method: "POST",
                    ..base
                },
                DpopError::Method,
            ),
            (
                Expected {
                    uri: "https://rs.example/b",
                    ..base
                },
                DpopError::Uri,
            ),
            (
                Expected {
                    now: now() + MAX_AGE_SECS + 10,
                    ..base
                },
                DpopError::Time,
            ),
        ];
        for (expected, error) in cases {
            assert_eq!(verify(&proof, &expected, &replay()), Err(error));
        }
    }
}
