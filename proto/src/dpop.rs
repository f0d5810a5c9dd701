//! DPoP (RFC 9449) proof verification: the one check writ's endpoints and
//! the SDK's resource-server [`Verifier`] both run, so they refuse exactly
//! the same proofs. [`check`] is a pure function of the proof, the request
//! and the clock; a [`ReplayStore`] remembers accepted proofs so each is
//! used once ([`ReplayCache`] in memory is the one writ ships; a store shared
//! by several replicas implements the same trait). The client side, [`DpopKey`], signs proofs in the form [`check`]
//! accepts.
//!
//! [`Verifier`]: https://docs.rs/writ-sdk

mod header;
mod key;

pub use key::{DpopKey, KeyError};

use crate::jws::Compact;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// A proof's `iat` may be this far in the past...
pub const MAX_AGE_SECS: u64 = 60;
/// ...or this far in the future (clock skew).
pub const MAX_SKEW_SECS: u64 = 5;
/// Proofs longer than this are refused before parsing.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// Why a DPoP proof was refused (`invalid_dpop_proof`, RFC 9449 section 7.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// Not a compact JWS with JSON parts, or over the size limit.
    #[error("DPoP proof is malformed")]
    Malformed,
    /// `typ` is not `dpop+jwt`.
    #[error("DPoP proof typ must be dpop+jwt")]
    Type,
    /// `alg` is not an asymmetric algorithm writ accepts.
    #[error("DPoP proof algorithm is not allowed")]
    Algorithm,
    /// `jwk` is missing, not a public key, or carries private members.
    #[error("DPoP proof jwk must be a public key without private parts")]
    Key,
    /// The signature does not verify with the embedded key.
    #[error("DPoP proof signature is invalid")]
    Signature,
    /// `htm` is not this request's method.
    #[error("DPoP proof htm does not match the request")]
    Method,
    /// `htu` is not this endpoint.
    #[error("DPoP proof htu does not match the request")]
    Uri,
    /// `iat` is outside the accepted window.
    #[error("DPoP proof is too old or from the future")]
    Time,
    /// This `jti` was already used inside the window.
    #[error("DPoP proof was replayed")]
    Replay,
    /// `ath` does not match the access token presented with it.
    #[error("DPoP proof ath does not match the access token")]
    AccessTokenHash,
    /// The proof's key is not the one the token is bound to.
    #[error("DPoP proof key does not match the token's binding")]
    Binding,
    /// The replay cache is full: the proof may be fine, but it cannot be
    /// remembered, so it is not accepted now (503, `Retry-After`).
    #[error("too many DPoP proofs in flight; retry in {retry_after} s")]
    Busy {
        /// Seconds until room is made.
        retry_after: u64,
    },
}

impl From<ReplayError> for DpopError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replay => Self::Replay,
            ReplayError::Full { retry_after } => Self::Busy { retry_after },
        }
    }
}

/// Proof `iat`s are grouped into generations this many seconds wide; a
/// generation is dropped whole once every proof in it is too old to verify.
const GENERATION_SECS: u64 = 8;

/// Why a proof could not be remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// This proof was already used inside its window.
    #[error("DPoP proof was replayed")]
    Replay,
    /// The cache holds as many live proofs as it may; forgetting one would
    /// let it be replayed, so new proofs are refused until old ones expire.
    #[error("too many DPoP proofs in flight; retry in {retry_after} s")]
    Full {
        /// Seconds until the oldest generation expires.
        retry_after: u64,
    },
}

/// Where accepted proofs are remembered, so each is accepted once.
///
/// [`verify`] and the broker's grant call it with a proof that checked out;
/// an implementation must remember the proof's [`CheckedProof::replay_key`]
/// at least until [`CheckedProof::valid_until`] (never forget a live proof,
/// or it could be replayed), refuse one it has seen ([`ReplayError::Replay`]),
/// and refuse rather than forget when it is full ([`ReplayError::Full`]).
pub trait ReplayStore: Send + Sync {
    /// Records a checked proof at `now`; refuses it if it was seen before
    /// or if there is no room for it.
    fn remember(&self, proof: &CheckedProof, now: u64) -> Result<(), ReplayError>;
}

/// The in-memory [`ReplayStore`]: remembers every accepted proof until it is
/// too old to verify, so each is accepted once by this process.
///
/// It never forgets a live proof: proofs are kept in generations by `iat`,
/// and a generation is dropped only when all of its proofs have left the
/// acceptance window. When `capacity` live proofs are held, new ones are
/// refused ([`ReplayError::Full`]) rather than an old one being evicted.
pub struct ReplayCache {
    capacity: usize,
    generations: std::sync::Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    /// Generation number (`iat / GENERATION_SECS`) to the keys seen in it.
    by_iat: std::collections::BTreeMap<u64, std::collections::HashSet<ReplayKey>>,
    len: usize,
}

impl Generations {
    /// Drops every generation whose newest possible `iat` is too old at `now`.
    fn expire(&mut self, now: u64) {
        while let Some(entry) = self.by_iat.first_entry() {
            let newest_iat = entry.key().saturating_mul(GENERATION_SECS) + GENERATION_SECS - 1;
            if newest_iat.saturating_add(MAX_AGE_SECS) >= now {
                break;
            }
            self.len -= entry.remove().len();
        }
    }
}

impl ReplayCache {
    /// A cache holding at most `capacity` live proofs.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            generations: std::sync::Mutex::new(Generations::default()),
        }
    }

    /// How many live proofs are held.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Whether no proof is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // The sets stay consistent across a panic elsewhere (each update is
        // one insert and one counter step), so a poisoned lock is usable.
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ReplayStore for ReplayCache {
    fn remember(&self, proof: &CheckedProof, now: u64) -> Result<(), ReplayError> {
        let mut g = self.lock();
        g.expire(now);
        let generation = proof.iat / GENERATION_SECS;
        if g.by_iat
            .get(&generation)
            .is_some_and(|keys| keys.contains(&proof.replay_key))
        {
            return Err(ReplayError::Replay);
        }
        if g.len >= self.capacity {
            let oldest = g.by_iat.keys().next().copied().unwrap_or(generation);
            let expires = oldest.saturating_mul(GENERATION_SECS) + GENERATION_SECS + MAX_AGE_SECS;
            return Err(ReplayError::Full {
                retry_after: expires.saturating_sub(now).max(1),
            });
        }
        g.by_iat
            .entry(generation)
            .or_default()
            .insert(proof.replay_key);
        g.len += 1;
        Ok(())
    }
}

/// A proof whose signature, key, request and time checked out, not yet
/// remembered against replay: the caller remembers it with
/// [`ReplayStore::remember`] once the request's credential has checked out
/// too, so unauthenticated requests cannot fill the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// The RFC 7638 thumbprint of the proof's key.
    pub jkt: String,
    iat: u64,
    replay_key: ReplayKey,
}

impl CheckedProof {
    /// What a [`ReplayStore`] remembers of the proof: see [`ReplayKey`].
    pub fn replay_key(&self) -> &ReplayKey {
        &self.replay_key
    }

    /// The last second (since the epoch) at which [`check`] accepts this
    /// proof: a [`ReplayStore`] may forget it only after that.
    pub fn valid_until(&self) -> u64 {
        self.iat.saturating_add(MAX_AGE_SECS)
    }
}

/// 128 bits of SHA-256 over a proof's key thumbprint and `jti`: 16 bytes a
/// proof whatever the `jti`'s length, so a cache sized for a broker's full
/// rate over the window stays tens of megabytes.
pub type ReplayKey = [u8; 16];

fn replay_key(jkt: &str, jti: &str) -> ReplayKey {
    let digest = sha256(format!("{jkt}:{jti}").as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// What a proof must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `htm`, e.g. `POST`.
    pub method: &'a str,
    /// `htu`: the endpoint URL without query or fragment.
    pub uri: &'a str,
    /// Seconds since the epoch.
    pub now: u64,
    /// The access token presented with the proof, if any (`ath`).
    pub access_token: Option<&'a str>,
}

/// Checks a proof and remembers it: [`check`], then
/// [`ReplayStore::remember`]. Returns the thumbprint of its key. Use it where
/// the credential the proof comes with was verified first.
pub fn verify(
    proof: &str,
    expected: &Expected<'_>,
    replay: &dyn ReplayStore,
) -> Result<String, DpopError> {
    let checked = check(proof, expected)?;
    replay
        .remember(&checked, expected.now)
        .map_err(DpopError::from)?;
    Ok(checked.jkt)
}

/// Why a request's `DPoP` header cannot be read as one proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofHeaderError {
    /// Two or more `DPoP` headers (RFC 9449 section 4.3: exactly one).
    #[error("send exactly one DPoP header")]
    MoreThanOne,
    /// The header is not visible ASCII text.
    #[error("DPoP header is not text")]
    NotText,
}

/// The request's one DPoP proof, from the values of its `DPoP` headers:
/// none is `None`, more than one is refused (RFC 9449 section 4.3). The
/// broker and every SDK verifier read the header through this.
pub fn single_proof<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<&'a str>, ProofHeaderError> {
    let mut values = values.into_iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(one), None) => std::str::from_utf8(one)
            .ok()
            // Visible ASCII (and tab), as HTTP header text is read.
            .filter(|text| {
                text.bytes()
                    .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
            })
            .map(Some)
            .ok_or(ProofHeaderError::NotText),
        (Some(_), Some(_)) => Err(ProofHeaderError::MoreThanOne),
    }
}

/// Checks everything about a proof but replay: form, `typ`, `alg`, a public
/// `jwk`, the signature, `htm`, `htu`, the `iat` window and `ath`.
pub fn check(proof: &str, expected: &Expected<'_>) -> Result<CheckedProof, DpopError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::Malformed);
    }
    let compact = Compact::split(proof).ok_or(DpopError::Malformed)?;
    let header = header::parse(compact.header)?;
    // The signed message is the proof up to its second dot.
    let message = &proof[..compact.header.len() + 1 + compact.payload.len()];
    match jsonwebtoken::crypto::verify(
        compact.signature,
        message.as_bytes(),
        &header.key,
        header.alg,
    ) {
        Ok(true) => {}
        Ok(false) => return Err(DpopError::Signature),
        Err(e) => {
            return Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => DpopError::Signature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat => DpopError::Key,
                _ => DpopError::Malformed,
            });
        }
    }
    let claims = ProofClaims::decode(compact.payload)?;
    fn text(v: &Option<Value>) -> Option<&str> {
        v.as_ref().and_then(Value::as_str)
    }
    if text(&claims.htm) != Some(expected.method) {
        return Err(DpopError::Method);
    }
    if text(&claims.htu).map(|u| u.split(['?', '#']).next().unwrap_or(u)) != Some(expected.uri) {
        return Err(DpopError::Uri);
    }
    let iat = claims
        .iat
        .as_ref()
        .and_then(Value::as_u64)
        .ok_or(DpopError::Time)?;
    // Saturating: the sender signs its own proof and picks `iat`, and an
    // `iat` near u64::MAX overflowed here (a panic in debug builds, a wrap
    // in release); found by the property tests in tests/fuzz.rs.
    if iat.saturating_add(MAX_AGE_SECS) < expected.now
        || iat > expected.now.saturating_add(MAX_SKEW_SECS)
    {
        return Err(DpopError::Time);
    }
    if let Some(token) = expected.access_token
        && text(&claims.ath) != Some(access_token_hash(token).as_str())
    {
        return Err(DpopError::AccessTokenHash);
    }
    let jti = text(&claims.jti)
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(DpopError::Malformed)?;
    Ok(CheckedProof {
        replay_key: replay_key(&header.jkt, jti),
        jkt: header.jkt.clone(),
        iat,
    })
}

/// The claims a proof is checked on, each kept as JSON so that a member of
/// the wrong type is refused for what it is (a non-string `htm` is a method
/// mismatch), as before; other members are skipped unparsed.
#[derive(serde::Deserialize)]
struct ProofClaims {
    htm: Option<Value>,
    htu: Option<Value>,
    iat: Option<Value>,
    ath: Option<Value>,
    jti: Option<Value>,
}

impl ProofClaims {
    fn decode(segment: &str) -> Result<Self, DpopError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| DpopError::Malformed)?;
        // A JSON object only: a derived struct would also take an array.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(DpopError::Malformed);
        }
        serde_json::from_slice(&bytes).map_err(|_| DpopError::Malformed)
    }
}

/// SHA-256 of `bytes`.
fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `ath`: the base64url SHA-256 of an access token (RFC 9449 section 4.2).
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(access_token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dpop_header_is_read_as_one_proof_or_refused() {
        assert_eq!(single_proof([]), Ok(None));
        assert_eq!(single_proof([b"a.b.c".as_slice()]), Ok(Some("a.b.c")));
        assert_eq!(
            single_proof([b"a".as_slice(), b"a".as_slice()]),
            Err(ProofHeaderError::MoreThanOne)
        );
        assert_eq!(
            single_proof([b"\xff\xfe".as_slice()]),
            Err(ProofHeaderError::NotText)
        );
        assert_eq!(
            single_proof([b"a\x01b".as_slice()]),
            Err(ProofHeaderError::NotText)
        );
    }

    fn checked(iat: u64, jti: &str) -> CheckedProof {
        CheckedProof {
            jkt: "k".into(),
            iat,
            replay_key: replay_key("k", jti),
        }
    }

    #[test]
    fn a_full_cache_refuses_new_proofs_and_never_forgets_a_live_one() {
        let cache = ReplayCache::new(3);
        for jti in ["a", "b", "c"] {
            assert_eq!(cache.remember(&checked(1_000, jti), 1_000), Ok(()));
        }
        assert!(matches!(
            cache.remember(&checked(1_000, "d"), 1_000),
            Err(ReplayError::Full { retry_after }) if retry_after > 0
        ));
        assert_eq!(
            cache.remember(&checked(1_000, "a"), 1_030),
            Err(ReplayError::Replay)
        );
        // Once every proof is too old to verify, room is made again.
        let later = 1_000 + GENERATION_SECS + MAX_AGE_SECS;
        assert_eq!(cache.remember(&checked(later, "d"), later), Ok(()));
        assert_eq!(cache.len(), 1);
    }
}
