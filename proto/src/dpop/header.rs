//! A proof's protected header, parsed once per distinct header.
//!
//! A client signs every proof with the same key, so every proof it sends
//! carries the same header bytes (`typ`, `alg`, `jwk`): parsing the key
//! and computing its thumbprint once per header, not once per proof, takes
//! JSON parsing and key setup off each request. The cache maps the exact
//! header text to what parsing it gave (a pure function of those bytes), so
//! a hit can never accept what a parse would refuse; refusals are not
//! cached. It is bounded and emptied when full: dropping an entry costs one
//! parse, never a check.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::DpopError;

/// Headers longer than this are parsed every time (an EC or Ed25519 key's
/// header is about 200 bytes, an RSA-4096 key's about 800).
const MAX_CACHED_HEADER: usize = 1024;
/// Distinct headers remembered at once.
const CAPACITY: usize = 1024;

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// What a proof's header says, checked.
pub(super) struct ProofHeader {
    pub(super) alg: Algorithm,
    /// The RFC 7638 thumbprint of `jwk`.
    pub(super) jkt: String,
    pub(super) key: DecodingKey,
}

fn cache() -> &'static RwLock<HashMap<Box<str>, Arc<ProofHeader>>> {
    static CACHE: OnceLock<RwLock<HashMap<Box<str>, Arc<ProofHeader>>>> = OnceLock::new();
    CACHE.get_or_init(RwLock::default)
}

/// The checked header of base64url `segment`.
pub(super) fn parse(segment: &str) -> Result<Arc<ProofHeader>, DpopError> {
    let cacheable = segment.len() <= MAX_CACHED_HEADER;
    if cacheable
        && let Ok(cached) = cache().read()
        && let Some(header) = cached.get(segment)
    {
        return Ok(header.clone());
    }
    let header = Arc::new(parse_uncached(segment)?);
    if cacheable && let Ok(mut cached) = cache().write() {
        if cached.len() >= CAPACITY {
            cached.clear();
        }
        cached.insert(segment.into(), header.clone());
    }
    Ok(header)
}

fn parse_uncached(segment: &str) -> Result<ProofHeader, DpopError> {
    let header: Map<String, Value> =
        crate::jws::decode_segment(segment).ok_or(DpopError::Malformed)?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(DpopError::Type);
    }
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => Algorithm::ES256,
        Some("ES384") => Algorithm::ES384,
        Some("EdDSA") => Algorithm::EdDSA,
        Some("RS256") => Algorithm::RS256,
        Some("PS256") => Algorithm::PS256,
        _ => return Err(DpopError::Algorithm),
    };
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(DpopError::Key)?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(DpopError::Key);
    }
    let parsed: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(Value::Object(jwk.clone())).map_err(|_| DpopError::Key)?;
    // The key's kind must be the algorithm's (jsonwebtoken's `decode`
    // checked this; its bare signature check does not).
    let kind_fits = matches!(
        (&parsed.algorithm, alg),
        (
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_),
            Algorithm::ES256 | Algorithm::ES384
        ) | (
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_),
            Algorithm::EdDSA
        ) | (
            jsonwebtoken::jwk::AlgorithmParameters::RSA(_),
            Algorithm::RS256 | Algorithm::PS256
        )
    );
    if !kind_fits {
        return Err(DpopError::Key);
    }
    let jkt = crate::jwk::thumbprint(&parsed).map_err(|_| DpopError::Key)?;
    let key = DecodingKey::from_jwk(&parsed).map_err(|_| DpopError::Key)?;
    Ok(ProofHeader { alg, jkt, key })
}

#[cfg(test)]
mod tests {
    use super::super::{DpopError, DpopKey, Expected, check};

    const URI: &str = "https://writ.test/oauth2/token";

    fn expected(now: u64) -> Expected<'static> {
        Expected {
            method: "POST",
            uri: URI,
            now,
            access_token: None,
        }
    }

    /// The proofs carry the real time (`DpopKey` signs `iat` from it).
    #[allow(clippy::disallowed_methods)]
    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    }

    /// A cached header stands for the key it names and nothing else: a proof
    /// that carries it but was signed by another key, or whose payload was
    /// changed after signing, is refused as before.
    #[test]
    fn a_cached_header_does_not_vouch_for_a_forged_signature() {
        let owner = DpopKey::generate().unwrap();
        let thief = DpopKey::generate().unwrap();
        let genuine = owner.proof("POST", URI, None).unwrap();
        assert_eq!(
            check(&genuine, &expected(now())).unwrap().jkt,
            owner.thumbprint()
        );

        let header = genuine.split('.').next().unwrap();
        let theirs = thief.proof("POST", URI, None).unwrap();
        let mut parts = theirs.split('.').skip(1);
        let (payload, signature) = (parts.next().unwrap(), parts.next().unwrap());
        let forged = format!("{header}.{payload}.{signature}");
        assert_eq!(check(&forged, &expected(now())), Err(DpopError::Signature));

        let other = owner.proof("PUT", URI, None).unwrap();
        let other_payload = other.split('.').nth(1).unwrap();
        let genuine_signature = genuine.split('.').nth(2).unwrap();
        let spliced = format!("{header}.{other_payload}.{genuine_signature}");
        assert_eq!(check(&spliced, &expected(now())), Err(DpopError::Signature));
    }

    /// Many distinct keys (an attacker churning the cache) cost parses, not
    /// verdicts: a key seen first is still checked correctly afterwards.
    #[test]
    fn churning_the_cache_changes_no_verdict() {
        let first = DpopKey::generate().unwrap();
        assert!(check(&first.proof("POST", URI, None).unwrap(), &expected(now())).is_ok());
        for _ in 0..super::CAPACITY + 10 {
            let key = DpopKey::generate().unwrap();
            assert!(check(&key.proof("POST", URI, None).unwrap(), &expected(now())).is_ok());
        }
        let again = first.proof("POST", URI, None).unwrap();
        assert_eq!(
            check(&again, &expected(now())).unwrap().jkt,
            first.thumbprint()
        );
        let wrong_method = first.proof("GET", URI, None).unwrap();
        assert_eq!(
            check(&wrong_method, &expected(now())),
            Err(DpopError::Method)
        );
    }
}
