//! An issuer's public keys, from a JWKS file or over HTTPS.
//!
//! Keys live in an [`ArcSwap`] so the hot path reads them without a lock. An
//! unknown `kid` triggers at most one refetch per [`REFETCH_AFTER`]; a
//! `jwks_uri` is also refreshed in the background. With no keys loaded, every
//! token of the issuer is refused: writ fails closed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::AttestError;
use crate::config::IssuerConfig;

/// An unknown `kid` causes a refetch at most this often.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Family {
    fn verifies(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Self::Rsa, Algorithm::RS256 | Algorithm::PS256)
                | (Self::P256, Algorithm::ES256)
                | (Self::P384, Algorithm::ES384)
                | (Self::Ed25519, Algorithm::EdDSA)
        )
    }
}

/// One usable public key.
pub(crate) struct VerifyKey {
    decoding: DecodingKey,
    family: Family,
    /// The JWK's own `alg`, when it pins one.
    alg: Option<String>,
}

impl VerifyKey {
    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    fn allows(&self, alg: Algorithm) -> bool {
        self.family.verifies(alg)
            && self
                .alg
                .as_deref()
                .is_none_or(|pinned| Some(pinned) == alg_name(alg))
    }
}

fn alg_name(alg: Algorithm) -> Option<&'static str> {
    Some(match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::PS256 => "PS256",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => return None,
    })
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    all: Vec<Arc<VerifyKey>>,
    /// RFC 7638 thumbprints of every key: what a key *is*, whatever its
    /// `kid` (an issuer may reuse a `kid` for a new key, or name none).
    thumbprints: std::collections::HashSet<String>,
}

impl KeySet {
    /// Parses a JWKS document, keeping only asymmetric keys writ accepts.
    fn parse(bytes: &[u8]) -> Result<Self, String> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS has no \"keys\" array")?;
        let mut set = Self::default();
        for jwk in keys {
            let Some(family) = family_of(jwk) else {
                continue;
            };
            if jwk
                .get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let Ok(parsed) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(jwk.clone()) else {
                continue;
            };
            let Ok(decoding) = DecodingKey::from_jwk(&parsed) else {
                continue;
            };
            let Ok(thumbprint) = writ_proto::jwk::thumbprint(&parsed) else {
                continue;
            };
            set.thumbprints.insert(thumbprint);
            let key = Arc::new(VerifyKey {
                decoding,
                family,
                alg: jwk.get("alg").and_then(Value::as_str).map(str::to_owned),
            });
            if let Some(kid) = jwk.get("kid").and_then(Value::as_str) {
                set.by_kid.insert(kid.to_owned(), key.clone());
            }
            set.all.push(key);
        }
        Ok(set)
    }

    /// Whether every key of `self` is still in `newer`, compared by key
    /// material: a key replaced under the same `kid` counts as withdrawn.
    fn is_covered_by(&self, newer: &KeySet) -> bool {
        self.thumbprints.is_subset(&newer.thumbprints)
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerifyKey>, AttestError> {
        let key = match kid {
            Some(kid) => self
                .by_kid
                .get(kid)
                .cloned()
                .ok_or(AttestError::UnknownKey)?,
            None => {
                // Without a kid, only an unambiguous key may be used.
                let mut usable = self.all.iter().filter(|k| k.allows(alg));
                match (usable.next(), usable.next()) {
                    (Some(k), None) => k.clone(),
                    _ => return Err(AttestError::UnknownKey),
                }
            }
        };
        if key.allows(alg) {
            Ok(key)
        } else {
            Err(AttestError::AlgorithmNotAllowed)
        }
    }
}

fn family_of(jwk: &Value) -> Option<Family> {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str);
    match (s("kty")?, s("crv")) {
        ("RSA", _) => Some(Family::Rsa),
        ("EC", Some("P-256")) => Some(Family::P256),
        ("EC", Some("P-384")) => Some(Family::P384),
        ("OKP", Some("Ed25519")) => Some(Family::Ed25519),
        // "oct" (HMAC) and anything else is never a verification key here.
        _ => None,
    }
}

enum Origin {
    File(PathBuf),
    Uri {
        url: String,
        client: reqwest::Client,
    },
}

struct Inner {
    name: String,
    origin: Origin,
    keys: ArcSwap<KeySet>,
    /// Bumped whenever a key disappears, so verdicts cached under it lapse.
    generation: AtomicU64,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    refresh_every: Duration,
}

/// The public keys of one issuer.
#[derive(Clone)]
pub struct KeySource {
    inner: Arc<Inner>,
}

impl KeySource {
    /// Builds the source and loads keys once. A file that cannot be read is
    /// an error; a URI that cannot be fetched is logged and retried later.
    pub async fn from_config(ic: &IssuerConfig) -> Result<Self, String> {
        let origin = match (&ic.jwks_file, &ic.jwks_uri) {
            (Some(path), _) => Origin::File(path.clone()),
            (None, Some(url)) => Origin::Uri {
                url: url.clone(),
                client: https_client(ic.jwks_ca.as_ref())?,
            },
            (None, None) => return Err("no jwks_file or jwks_uri".into()),
        };
        let source = Self {
            inner: Arc::new(Inner {
                name: ic.name.clone(),
                origin,
                keys: ArcSwap::from_pointee(KeySet::default()),
                generation: AtomicU64::new(0),
                last_fetch: tokio::sync::Mutex::new(None),
                refresh_every: ic.jwks_refresh,
            }),
        };
        match (source.load().await, &source.inner.origin) {
            (Ok(()), _) => {}
            (Err(e), Origin::File(_)) => return Err(e),
            (Err(e), Origin::Uri { .. }) => {
                tracing::warn!(issuer = %ic.name, error = %e, "JWKS fetch failed; tokens of this issuer are refused until it succeeds");
            }
        }
        // The startup load does not count against REFETCH_AFTER: a key
        // rotated just before start is still found on first sight.
        Ok(source)
    }

    /// The key for `kid` that may verify `alg`, refetching once if unknown.
    pub(crate) async fn find(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyKey>, AttestError> {
        match self.inner.keys.load().find(kid, alg) {
            Err(AttestError::UnknownKey) => {}
            other => return other,
        }
        {
            let mut last = self.inner.last_fetch.lock().await;
            let due = last.is_none_or(|t| t.elapsed() >= REFETCH_AFTER);
            if due {
                *last = Some(Instant::now());
                if let Err(e) = self.load().await {
                    tracing::warn!(issuer = %self.inner.name, error = %e, "JWKS refetch failed");
                }
            }
        }
        let keys = self.inner.keys.load();
        if keys.all.is_empty() {
            return Err(AttestError::KeysUnavailable);
        }
        keys.find(kid, alg)
    }

    async fn load(&self) -> Result<(), String> {
        let bytes = match &self.inner.origin {
            Origin::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            Origin::Uri { url, client } => fetch(client, url).await?,
        };
        let set = Arc::new(KeySet::parse(&bytes)?);
        tracing::debug!(issuer = %self.inner.name, keys = set.all.len(), "JWKS loaded");
        let old = self.inner.keys.swap(set.clone());
        if !old.is_covered_by(&set) {
            self.inner.generation.fetch_add(1, Ordering::AcqRel);
            tracing::info!(issuer = %self.inner.name, "a signing key was withdrawn; cached attestations of this issuer are dropped");
        }
        Ok(())
    }

    /// Changes whenever a key of this issuer is withdrawn.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Refetches a `jwks_uri` periodically; files are re-read on unknown `kid`.
    pub fn spawn_refresh(&self) {
        if matches!(self.inner.origin, Origin::File(_)) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.inner.refresh_every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = me.load().await {
                    tracing::warn!(issuer = %me.inner.name, error = %e, "JWKS refresh failed; keeping the last keys");
                }
            }
        });
    }
}

fn https_client(extra_ca: Option<&PathBuf>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = extra_ca {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let cert =
            reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| format!("HTTPS client: {e}"))
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: status {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!(
                "GET {url}: JWKS larger than {MAX_JWKS_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_keys_in_a_jwks_are_ignored() {
        let set = KeySet::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#).unwrap();
        assert!(set.all.is_empty());
        assert!(matches!(
            set.find(Some("h"), Algorithm::ES256),
            Err(AttestError::UnknownKey)
        ));
    }

    #[test]
    fn jwks_without_keys_array_is_refused() {
        assert!(KeySet::parse(b"{}").is_err());
        assert!(KeySet::parse(b"not json").is_err());
    }
}
