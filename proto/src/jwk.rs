//! Public JSON Web Keys (RFC 7517) as `jsonwebtoken`'s [`Jwk`], and their
//! RFC 7638 thumbprints. The broker's key ids, a DPoP proof's `jkt`, the
//! SDK's DPoP key and the identity of an issuer's keys across refetches all
//! come from the one [`thumbprint`], so they cannot disagree on a key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, OctetKeyPairParameters, OctetKeyPairType,
};
use serde_json::json;

/// A key with no public thumbprint: a symmetric (`oct`) key, which is a
/// shared secret and must never be published or presented as a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a symmetric key has no public thumbprint")]
pub struct SymmetricKey;

/// The RFC 7638 thumbprint of a public key: base64url SHA-256 of its
/// required members only (`kid`, `alg`, `use` and the like never change it).
pub fn thumbprint(jwk: &Jwk) -> Result<String, SymmetricKey> {
    // The members are written in lexicographic order, as RFC 7638 requires:
    // serde_json keeps insertion order when a dependency turns on its
    // `preserve_order` (cedar-policy does), and sorts otherwise.
    let canonical = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => {
            json!({"crv": p.curve, "kty": "EC", "x": p.x, "y": p.y})
        }
        AlgorithmParameters::OctetKeyPair(p) => json!({"crv": p.curve, "kty": "OKP", "x": p.x}),
        AlgorithmParameters::RSA(p) => json!({"e": p.e, "kty": "RSA", "n": p.n}),
        AlgorithmParameters::OctetKey(_) => return Err(SymmetricKey),
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.to_string().as_bytes());
    Ok(URL_SAFE_NO_PAD.encode(digest))
}

/// The public JWK of a P-256 key from its uncompressed SEC1 point
/// (`0x04 || x || y`, 65 bytes, as ring gives it); `None` for any other
/// encoding. No `kid`, `alg` or `use`: the caller adds what it publishes.
pub fn p256(point: &[u8]) -> Option<Jwk> {
    let (Some(0x04), Some(x), Some(y), None) = (
        point.first(),
        point.get(1..33),
        point.get(33..65),
        point.get(65),
    ) else {
        return None;
    };
    Some(public(AlgorithmParameters::EllipticCurve(
        EllipticCurveKeyParameters {
            key_type: EllipticCurveKeyType::EC,
            curve: EllipticCurve::P256,
            x: URL_SAFE_NO_PAD.encode(x),
            y: URL_SAFE_NO_PAD.encode(y),
        },
    )))
}

/// The public JWK of an Ed25519 key (its 32 public bytes); no `kid`, `alg`
/// or `use`.
pub fn ed25519(public_key: &[u8]) -> Jwk {
    public(AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
        key_type: OctetKeyPairType::OctetKeyPair,
        curve: EllipticCurve::Ed25519,
        x: URL_SAFE_NO_PAD.encode(public_key),
    }))
}

fn public(algorithm: AlgorithmParameters) -> Jwk {
    Jwk {
        common: CommonParameters::default(),
        algorithm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn jwk(value: Value) -> Jwk {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn thumbprint_matches_the_rfc_7638_example() {
        // RFC 7638 section 3.1; `alg` and `kid` do not count.
        let key = jwk(json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }));
        assert_eq!(
            thumbprint(&key).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn thumbprints_of_ec_and_okp_keys_hash_their_sorted_required_members() {
        // The canonical forms RFC 7638 section 3.2 prescribes, by hand.
        let expect = |canonical: &str| {
            URL_SAFE_NO_PAD.encode(ring::digest::digest(
                &ring::digest::SHA256,
                canonical.as_bytes(),
            ))
        };
        let ec = jwk(
            json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AQ", "kid": "k", "use": "sig"}),
        );
        assert_eq!(
            thumbprint(&ec).unwrap(),
            expect(r#"{"crv":"P-256","kty":"EC","x":"AA","y":"AQ"}"#)
        );
        let okp = jwk(json!({"kty": "OKP", "crv": "Ed25519", "x": "Ag", "alg": "EdDSA"}));
        assert_eq!(
            thumbprint(&okp).unwrap(),
            expect(r#"{"crv":"Ed25519","kty":"OKP","x":"Ag"}"#)
        );
    }

    #[test]
    fn a_symmetric_key_has_no_thumbprint() {
        let oct = jwk(json!({"kty": "oct", "k": "c2VjcmV0"}));
        assert_eq!(thumbprint(&oct), Err(SymmetricKey));
    }

    #[test]
    fn a_p256_key_comes_only_from_an_uncompressed_point() {
        let mut point = vec![0x04];
        point.extend([1u8; 32]);
        point.extend([2u8; 32]);
        let key = p256(&point).unwrap();
        assert_eq!(
            serde_json::to_value(&key).unwrap(),
            json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])})
        );
        // Compressed, truncated, too long: refused.
        let mut compressed = vec![0x02];
        compressed.extend([1u8; 32]);
        for bad in [
            &compressed[..],
            &point[..64],
            &[point.clone(), vec![0]].concat()[..],
        ] {
            assert_eq!(p256(bad), None);
        }
        let mut wrong_tag = point.clone();
        wrong_tag[0] = 0x05;
        assert_eq!(p256(&wrong_tag), None);
    }

    #[test]
    fn an_ed25519_key_has_only_its_public_members() {
        assert_eq!(
            serde_json::to_value(ed25519(&[7u8; 32])).unwrap(),
            json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7u8; 32])})
        );
    }
}
