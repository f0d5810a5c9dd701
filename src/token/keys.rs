//! Signing keys: generated with ring, kept (PKCS#8, encrypted when a
//! key-encryption key is configured) in the [`KeyStore`] every replica
//! shares, moved through their lifecycle (`lifecycle`) by whichever replica
//! notices first, and published as a JWKS.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use writ_proto::jwk;

use super::SigningError;
use super::key_store::{KeyStore, StoredKey};
use super::lifecycle::{
    self, KeyState, KeyTimes, Needed, Transition, plan, published_at, signer_at, upcoming_at,
};
use super::seal::{Kek, KekError};
use crate::clock::{Clock, rfc3339};
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

/// Why the key ring could not be opened or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The key-encryption key could not be read or used.
    #[error(transparent)]
    Kek(#[from] KekError),
    /// A stored key is encrypted and no key-encryption key is configured.
    #[error(
        "signing key {kid} is stored encrypted: set store.key_encryption_key_file to the key it was encrypted with"
    )]
    Sealed {
        /// Which key.
        kid: String,
    },
    /// A stored key does not decrypt with the configured key-encryption key.
    #[error(
        "signing key {kid} does not decrypt with store.key_encryption_key_file (wrong key-encryption key?)"
    )]
    WrongKek {
        /// Which key.
        kid: String,
    },
    /// No key signs: none could be made or brought forward.
    #[error("no signing key is active")]
    NoSigner,
}

/// How the key ring runs the lifecycle (from `[keys]`, `[tokens]` and the
/// longest token lifetime).
#[derive(Debug, Clone, Copy)]
pub struct KeySettings {
    /// The algorithm of new keys.
    pub algorithm: SigningAlgorithm,
    /// Seconds a rotated key is published before it signs.
    pub publish_ahead: u64,
    /// Seconds between automatic rotations (0: never).
    pub rotate_every: u64,
    /// Seconds a superseded key stays published after its successor
    /// activates: the longest live token lifetime plus leeway.
    pub retire_after: u64,
}

/// How often every replica re-reads the keys.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A key ready to sign on the hot path, with its JWS header encoded once.
pub struct Signer {
    key: Arc<SigningKey>,
    header_b64: String,
    txn_header_b64: String,
}

impl Signer {
    fn new(key: Arc<SigningKey>) -> Self {
        let header = |typ: &str| {
            let json =
                serde_json::json!({"alg": key.algorithm().as_str(), "kid": key.kid(), "typ": typ});
            URL_SAFE_NO_PAD.encode(json.to_string())
        };
        Self {
            header_b64: header(writ_proto::token::ACCESS_TOKEN_TYP),
            txn_header_b64: header(writ_proto::txn::TXN_TOKEN_TYP),
            key,
        }
    }

    /// The protected header of a transaction token, base64url.
    pub fn txn_header_b64(&self) -> &str {
        &self.txn_header_b64
    }

    /// The key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The protected header, base64url.
    pub fn header_b64(&self) -> &str {
        &self.header_b64
    }
}

/// A key as `GET /admin/v1/keys` and `writ keys list` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// The key id.
    pub kid: String,
    /// `ES256` or `EdDSA`.
    pub alg: String,
    /// `next`, `active`, `retiring` or `revoked`.
    pub state: &'static str,
    /// When it was made (RFC 3339).
    pub created: String,
    /// When it signs from.
    pub activates: String,
    /// When it is deleted, once known.
    pub retires: Option<String>,
    /// When it was revoked.
    pub revoked: Option<String>,
    /// Whether its private key is encrypted at rest.
    pub encrypted: bool,
}

impl KeyInfo {
    fn of(row: &StoredKey, state: KeyState) -> Self {
        Self {
            kid: row.kid.clone(),
            alg: row.alg.clone(),
            state: state.as_str(),
            created: rfc3339(row.created_at),
            activates: rfc3339(row.activates_at),
            retires: row.retires_at.map(rfc3339),
            revoked: row.revoked_at.map(rfc3339),
            encrypted: row.sealed,
        }
    }
}

/// One immutable view of the keys: who signs, who verifies, the JWKS.
pub struct KeySnapshot {
    signer: Option<Arc<Signer>>,
    /// A `next` key and when it takes over.
    upcoming: Option<(u64, Arc<Signer>)>,
    verifying: Vec<(String, DecodingKey, Algorithm)>,
    jwks: bytes::Bytes,
    keys: Vec<KeyInfo>,
}

impl KeySnapshot {
    /// The key that signs a token issued at `now`.
    pub fn signer_at(&self, now: u64) -> Option<&Signer> {
        match &self.upcoming {
            Some((at, next)) if now >= *at => Some(next),
            _ => self.signer.as_deref(),
        }
    }

    /// The verification key for `kid`, if published.
    pub fn verifying_key(&self, kid: &str) -> Option<(&DecodingKey, Algorithm)> {
        self.verifying
            .iter()
            .find(|(k, _, _)| k == kid)
            .map(|(_, dk, a)| (dk, *a))
    }

    /// The JWKS document, serialized once.
    pub fn jwks_json(&self) -> bytes::Bytes {
        self.jwks.clone()
    }

    /// Every stored key, newest first.
    pub fn keys(&self) -> &[KeyInfo] {
        &self.keys
    }
}

/// The signing keys, kept in the store and shared by every replica: a
/// snapshot swapped in by a background refresh (every [`REFRESH_EVERY`],
/// and at once after a local rotation or revocation). Reading it is one
/// atomic load; the database is never touched on the mint path.
pub struct KeyRing {
    store: Arc<dyn KeyStore>,
    kek: Option<Kek>,
    settings: KeySettings,
    clock: Arc<dyn Clock>,
    current: ArcSwap<KeySnapshot>,
    /// Parsed private keys by kid, so a refresh does not parse them again.
    parsed: std::sync::Mutex<HashMap<String, Arc<SigningKey>>>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

/// What a revocation did.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The state the key was in.
    pub was: KeyState,
    /// The key that signs now, if the revoked one did (or was about to).
    pub replacement: Option<KeyInfo>,
}

impl KeyRing {
    /// Opens the ring over `store`: applies due lifecycle changes, makes
    /// the first key if there is none (one replica wins; the others read
    /// its key), and reads every key. Fails if a key cannot be read (an
    /// encrypted key without the right `kek`).
    pub async fn open(
        store: Arc<dyn KeyStore>,
        kek: Option<Kek>,
        settings: KeySettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, KeyRingError> {
        let ring = Arc::new(Self {
            store,
            kek,
            settings,
            clock,
            current: ArcSwap::from_pointee(KeySnapshot {
                signer: None,
                upcoming: None,
                verifying: Vec::new(),
                jwks: bytes::Bytes::from_static(b"{\"keys\":[]}"),
                keys: Vec::new(),
            }),
            parsed: std::sync::Mutex::new(HashMap::new()),
            refreshing: tokio::sync::Mutex::new(()),
        });
        ring.refresh().await?;
        if ring.snapshot().signer_at(ring.clock.unix_now()).is_none() {
            return Err(KeyRingError::NoSigner);
        }
        Ok(ring)
    }

    /// The current snapshot (one atomic load).
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<KeySnapshot>> {
        self.current.load()
    }

    /// The JWKS document of the current snapshot.
    pub fn jwks_json(&self) -> bytes::Bytes {
        self.current.load().jwks_json()
    }

    /// Re-reads the keys in the background every [`REFRESH_EVERY`] for as
    /// long as the ring lives; failures are logged and retried.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(ring) = weak.upgrade() else { return };
                if let Err(error) = ring.refresh().await {
                    tracing::warn!(%error, "signing keys: refresh failed; keeping the keys in use");
                }
            }
        });
    }

    /// Brings the stored keys in line with the lifecycle at now (making a
    /// key when one is due) and swaps in a new snapshot.
    pub async fn refresh(&self) -> Result<(), KeyRingError> {
        let _one = self.refreshing.lock().await;
        let mut rows = self.store.signing_keys().await?;
        // A few rounds at most: each round's changes are conditional, so
        // a round that finds nothing to do (or lost every race) ends it.
        for _ in 0..4 {
            let now = self.clock.unix_now();
            let times: Vec<KeyTimes> = rows.iter().map(StoredKey::times).collect();
            let mut changed = match self.needed(&rows, &times, now) {
                Needed::Nothing => false,
                Needed::Active => self.make_signer(&times, now).await?,
                Needed::Rotation => self.insert_new(KeyState::Next, now).await?,
            };
            for change in plan(&times, now, self.settings.retire_after) {
                match self.store.apply_key_transition(&change).await {
                    Ok(done) => {
                        if done {
                            tracing::info!(?change, "signing keys: lifecycle step");
                        }
                        changed |= done;
                    }
                    // Another replica's step may have made this one moot
                    // (e.g. a second active key): the next round sees it.
                    Err(error) => {
                        tracing::debug!(%error, ?change, "signing keys: step not applied")
                    }
                }
            }
            if !changed {
                break;
            }
            rows = self.store.signing_keys().await?;
        }
        self.install(&rows)
    }

    /// What must be made now: the pure rule, plus a rotation when the
    /// signing key is not of the configured algorithm.
    fn needed(&self, rows: &[StoredKey], times: &[KeyTimes], now: u64) -> Needed {
        match lifecycle::needed(times, now, self.settings.rotate_every) {
            Needed::Nothing => {
                let signer =
                    signer_at(times, now).and_then(|s| rows.iter().find(|r| r.kid == s.kid));
                let has_next = rows.iter().any(|r| r.state == KeyState::Next);
                match signer {
                    Some(s) if !has_next && s.alg != self.settings.algorithm.as_str() => {
                        Needed::Rotation
                    }
                    _ => Needed::Nothing,
                }
            }
            other => other,
        }
    }

    /// Something must sign at once: bring a `next` key forward, else make
    /// an active key. Returns whether this replica changed anything.
    async fn make_signer(&self, times: &[KeyTimes], now: u64) -> Result<bool, KeyRingError> {
        if let Some(next) = times.iter().find(|k| k.state == KeyState::Next) {
            let change = Transition::Activate {
                kid: next.kid.clone(),
                at: Some(now),
            };
            return Ok(self.store.apply_key_transition(&change).await?);
        }
        self.insert_new(KeyState::Active, now).await
    }

    /// Generates a key of the configured algorithm and stores it as
    /// `state` (a `next` key signs after `publish_ahead`); returns whether
    /// it was stored (false: another replica's key won).
    async fn insert_new(&self, state: KeyState, now: u64) -> Result<bool, KeyRingError> {
        let alg = self.settings.algorithm;
        let (key, pkcs8) = SigningKey::generate(alg).map_err(|source| KeyRingError::Key {
            kid: "new".into(),
            source,
        })?;
        let (stored, sealed) = match &self.kek {
            Some(kek) => (kek.seal(key.kid(), &pkcs8)?, true),
            None => (pkcs8, false),
        };
        let activates_at = match state {
            KeyState::Next => now.saturating_add(self.settings.publish_ahead),
            _ => now,
        };
        let row = StoredKey {
            kid: key.kid().to_owned(),
            alg: alg.as_str().to_owned(),
            pkcs8: stored,
            sealed,
            created_at: now,
            state,
            activates_at,
            retires_at: None,
            revoked_at: None,
        };
        let inserted = self.store.insert_signing_key(&row).await?;
        if inserted {
            tracing::info!(
                kid = key.kid(),
                alg = alg.as_str(),
                state = state.as_str(),
                activates_at,
                encrypted = sealed,
                "signing keys: made a new key"
            );
            if let Ok(mut parsed) = self.parsed.lock() {
                parsed.insert(key.kid().to_owned(), Arc::new(key));
            }
        }
        Ok(inserted)
    }

    /// Makes a `next` key that signs after `publish_ahead` and is
    /// published at once; if one exists already (another replica or
    /// operator rotated), returns that one instead of making a second.
    pub async fn rotate(&self) -> Result<KeyInfo, KeyRingError> {
        let now = self.clock.unix_now();
        if !self.has_next().await? {
            self.insert_new(KeyState::Next, now).await?;
        }
        self.refresh().await?;
        self.snapshot()
            .keys()
            .iter()
            .find(|k| k.state == KeyState::Next.as_str())
            .cloned()
            // The new key already signs (publish_ahead of zero).
            .or_else(|| {
                let snap = self.snapshot();
                let kid = snap.signer_at(now)?.key().kid().to_owned();
                snap.keys().iter().find(|k| k.kid == kid).cloned()
            })
            .ok_or(KeyRingError::NoSigner)
    }

    async fn has_next(&self) -> Result<bool, KeyRingError> {
        Ok(self
            .store
            .signing_keys()
            .await?
            .iter()
            .any(|k| k.state == KeyState::Next))
    }

    /// Withdraws `kid` from every JWKS. If it signed (or was about to),
    /// something else signs at once: a `next` key brought forward, or a
    /// new key with no publish-ahead. Revoking a `next` key rotates again
    /// as usual. `None`: no such key.
    pub async fn revoke(&self, kid: &str) -> Result<Option<Revoked>, KeyRingError> {
        let now = self.clock.unix_now();
        let before: Vec<KeyTimes> = self
            .store
            .signing_keys()
            .await?
            .iter()
            .map(StoredKey::times)
            .collect();
        let signed = signer_at(&before, now).is_some_and(|s| s.kid == kid);
        let retires_at = lifecycle::retires_at(now, self.settings.retire_after);
        let Some(was) = self.store.revoke_signing_key(kid, now, retires_at).await? else {
            return Ok(None);
        };
        if was != KeyState::Revoked {
            tracing::warn!(kid, was = was.as_str(), "signing keys: key revoked");
        }
        let mut replacement = None;
        if was != KeyState::Revoked && (signed || was == KeyState::Active) {
            self.refresh().await?;
            let snap = self.snapshot();
            let kid = snap.signer_at(now).map(|s| s.key().kid().to_owned());
            replacement = kid.and_then(|kid| snap.keys().iter().find(|k| k.kid == kid).cloned());
        } else if was == KeyState::Next {
            replacement = Some(self.rotate().await?);
        } else {
            self.refresh().await?;
        }
        Ok(Some(Revoked { was, replacement }))
    }

    /// The private key of `row`, parsed (and decrypted) once.
    fn parse(&self, row: &StoredKey) -> Result<Arc<SigningKey>, KeyRingError> {
        if let Some(key) = self
            .parsed
            .lock()
            .ok()
            .and_then(|p| p.get(&row.kid).cloned())
        {
            return Ok(key);
        }
        let alg = match row.alg.as_str() {
            "ES256" => SigningAlgorithm::ES256,
            "EdDSA" => SigningAlgorithm::EdDSA,
            _ => {
                return Err(KeyRingError::Key {
                    kid: row.kid.clone(),
                    source: SigningError,
                });
            }
        };
        let key = if row.sealed {
            let kek = self.kek.as_ref().ok_or_else(|| KeyRingError::Sealed {
                kid: row.kid.clone(),
            })?;
            let pkcs8 = kek
                .open(&row.kid, &row.pkcs8)
                .ok_or_else(|| KeyRingError::WrongKek {
                    kid: row.kid.clone(),
                })?;
            SigningKey::from_pkcs8(alg, &pkcs8)
        } else {
            SigningKey::from_pkcs8(alg, &row.pkcs8)
        }
        .map_err(|source| KeyRingError::Key {
            kid: row.kid.clone(),
            source,
        })?;
        if key.kid() != row.kid {
            // A row whose key is not the one its kid names: refuse it.
            return Err(KeyRingError::Key {
                kid: row.kid.clone(),
                source: SigningError,
            });
        }
        let key = Arc::new(key);
        if let Ok(mut parsed) = self.parsed.lock() {
            parsed.insert(row.kid.clone(), key.clone());
        }
        Ok(key)
    }

    /// Builds and swaps in the snapshot of `rows` at now.
    fn install(&self, rows: &[StoredKey]) -> Result<(), KeyRingError> {
        let now = self.clock.unix_now();
        let times: Vec<KeyTimes> = rows.iter().map(StoredKey::times).collect();
        let signer_kid = signer_at(&times, now).map(|k| k.kid.clone());
        let upcoming = upcoming_at(&times, now).map(|k| (k.kid.clone(), k.activates_at));
        let mut signer = None;
        let mut next = None;
        let mut verifying = Vec::new();
        let mut published = Vec::new();
        let mut order: Vec<&StoredKey> = rows.iter().collect();
        order.sort_by(|a, b| {
            (b.activates_at, b.created_at, &b.kid).cmp(&(a.activates_at, a.created_at, &a.kid))
        });
        let mut keys = Vec::new();
        for row in order {
            let t = row.times();
            let state = match row.state {
                KeyState::Next if signer_kid.as_deref() == Some(row.kid.as_str()) => {
                    KeyState::Active
                }
                s => s,
            };
            keys.push(KeyInfo::of(row, state));
            if !published_at(&t, now) {
                continue;
            }
            let key = self.parse(row)?;
            if signer_kid.as_deref() == Some(row.kid.as_str()) {
                signer = Some(Arc::new(Signer::new(key.clone())));
            }
            if let Some((kid, at)) = &upcoming
                && *kid == row.kid
            {
                next = Some((*at, Arc::new(Signer::new(key.clone()))));
            }
            let (dk, a) = key.decoding_key().map_err(|source| KeyRingError::Key {
                kid: row.kid.clone(),
                source,
            })?;
            verifying.push((row.kid.clone(), dk, a));
            published.push(key.public_jwk().clone());
        }
        if let Ok(mut parsed) = self.parsed.lock() {
            parsed.retain(|kid, _| rows.iter().any(|r| r.kid == *kid));
        }
        let jwks =
            serde_json::to_vec(&JwkSet { keys: published }).map_err(|_| KeyRingError::Key {
                kid: "jwks".into(),
                source: SigningError,
            })?;
        self.current.store(Arc::new(KeySnapshot {
            signer,
            upcoming: next,
            verifying,
            jwks: jwks.into(),
            keys,
        }));
        Ok(())
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
