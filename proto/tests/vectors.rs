//! The shared test vectors (`proto/tests/vectors/*.json`, made by
//! `generate.py` there): writ-proto's own checks give every expected
//! verdict. The Python package runs the same files
//! (`clients/python/tests/test_vectors.py`), so both agree case by case.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests panic on unexpected results"
)]

use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use serde_json::Value;
use writ_proto::AccessClaims;
use writ_proto::binding::{self, BindingError, Possession, Scheme};
use writ_proto::claims::Confirmation;
use writ_proto::dpop::{self, DpopError, ReplayCache};
use writ_proto::revocation::{Entry, EntryKind, RevocationIndex};
use writ_proto::token::{self, TokenError};
use writ_proto::txn;

fn vectors(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn cases<'a>(v: &'a Value, member: &str) -> &'a Vec<Value> {
    let cases = v[member].as_array().unwrap();
    assert!(!cases.is_empty(), "no {member}");
    cases
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap()
}

fn token_verdict(e: TokenError) -> &'static str {
    match e {
        TokenError::Malformed => "malformed",
        TokenError::WrongType => "wrong_type",
        TokenError::Algorithm => "algorithm",
        TokenError::UnknownKey => "unknown_key",
        TokenError::BadSignature => "bad_signature",
        TokenError::WrongIssuer => "wrong_issuer",
        TokenError::WrongAudience => "wrong_audience",
        TokenError::Expired => "expired",
        TokenError::NotYetValid => "not_yet_valid",
        TokenError::Lifetime => "lifetime",
    }
}

#[test]
fn token_vectors_get_writ_protos_verdicts() {
    let v = vectors("tokens");
    let set: JwkSet = serde_json::from_value(v["jwks"].clone()).unwrap();
    let key = |kid: &str| {
        let jwk = set.find(kid)?;
        let alg = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                jsonwebtoken::Algorithm::ES256
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                jsonwebtoken::Algorithm::EdDSA
            }
            _ => return None,
        };
        Some((DecodingKey::from_jwk(jwk).unwrap(), alg))
    };
    let mut failures = Vec::new();
    for case in cases(&v, "cases") {
        let expected = token::Expected {
            issuer: text(&v["issuer"]),
            audience: Some(text(&v["audience"])),
            now: case["now"].as_u64().unwrap(),
            leeway: v["leeway"].as_u64().unwrap(),
            max_lifetime: None,
        };
        let t = text(&case["token"]);
        let got = token::header(t)
            .and_then(|h| {
                let (k, alg) = key(&h.kid).ok_or(TokenError::UnknownKey)?;
                token::verify(t, &h, &k, alg, &expected)
            })
            .map_err(token_verdict)
            .and_then(
                |claims: AccessClaims| match case["require_scope"].as_str() {
                    Some(scope) if !claims.has_scope(scope) => Err("missing_scope"),
                    _ => Ok("ok"),
                },
            )
            .unwrap_or_else(|e| e);
        if got != text(&case["verdict"]) {
            failures.push(format!(
                "{}: expected {}, got {got}",
                case["name"], case["verdict"]
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn txn_vectors_get_writ_protos_verdicts() {
    let v = vectors("txn");
    let set: JwkSet = serde_json::from_value(v["jwks"].clone()).unwrap();
    let key = |kid: &str| {
        let jwk = set.find(kid)?;
        Some(DecodingKey::from_jwk(jwk).unwrap())
    };
    let (issuer, trust_domain) = (text(&v["issuer"]), text(&v["trust_domain"]));
    let leeway = v["leeway"].as_u64().unwrap();
    let mut failures = Vec::new();
    for case in cases(&v, "cases") {
        let t = text(&case["token"]);
        let now = case["now"].as_u64().unwrap();
        let alg = jsonwebtoken::Algorithm::ES256;
        let got = match text(&case["as"]) {
            "txn" => txn::header(t).and_then(|h| {
                let k = key(&h.kid).ok_or(TokenError::UnknownKey)?;
                let expected = txn::Expected {
                    issuer,
                    trust_domain,
                    now,
                    leeway,
                    max_lifetime: None,
                };
                txn::verify(t, &h, &k, alg, &expected).map(|_| ())
            }),
            _ => token::header(t).and_then(|h| {
                let k = key(&h.kid).ok_or(TokenError::UnknownKey)?;
                let expected = token::Expected {
                    issuer,
                    audience: Some(trust_domain),
                    now,
                    leeway,
                    max_lifetime: None,
                };
                token::verify(t, &h, &k, alg, &expected).map(|_| ())
            }),
        }
        .map_or_else(token_verdict, |()| "ok");
        if got != text(&case["verdict"]) {
            failures.push(format!(
                "{}: expected {}, got {got}",
                case["name"], case["verdict"]
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn dpop_verdict(e: &DpopError) -> &'static str {
    match e {
        DpopError::Malformed => "malformed",
        DpopError::Type => "type",
        DpopError::Algorithm => "algorithm",
        DpopError::Key => "key",
        DpopError::Signature => "signature",
        DpopError::Method => "method",
        DpopError::Uri => "uri",
        DpopError::Time => "time",
        DpopError::Replay => "replay",
        DpopError::AccessTokenHash => "access_token_hash",
        DpopError::Binding => "binding",
        DpopError::Busy { .. } => "busy",
        _ => "other",
    }
}

fn binding_verdict(e: &BindingError) -> String {
    match e {
        BindingError::NotBound => "not_bound".into(),
        BindingError::WrongScheme => "wrong_scheme".into(),
        BindingError::NoProof => "no_proof".into(),
        BindingError::OtherKey => "other_key".into(),
        BindingError::Unsupported => "unsupported".into(),
        BindingError::Proof(p) => format!("dpop:{}", dpop_verdict(p)),
    }
}

#[test]
fn binding_vectors_get_writ_protos_verdicts_in_order_with_one_replay_cache() {
    let v = vectors("binding");
    let cache = ReplayCache::new(1_000);
    let mut failures = Vec::new();
    for case in cases(&v, "cases") {
        let cnf: Option<Confirmation> = serde_json::from_value(case["cnf"].clone()).unwrap();
        let scheme = match case["scheme"].as_str() {
            Some("Bearer") => Some(Scheme::Bearer),
            Some("DPoP") => Some(Scheme::Dpop),
            _ => None,
        };
        let expected = dpop::Expected {
            method: text(&case["method"]),
            uri: text(&case["uri"]),
            now: case["now"].as_u64().unwrap(),
            access_token: case["access_token"].as_str(),
        };
        let proof = case["proof"].as_str();
        let possession = Possession {
            scheme,
            certificate: case["certificate"].as_str(),
            dpop: || proof.map(|p| dpop::verify(p, &expected, &cache)),
        };
        let got = match binding::check(cnf.as_ref(), possession) {
            Ok(()) => "ok".to_owned(),
            Err(e) => binding_verdict(&e),
        };
        if got != text(&case["verdict"]) {
            failures.push(format!(
                "{}: expected {}, got {got}",
                case["name"], case["verdict"]
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn revocation_vectors_get_the_matchers_verdicts() {
    let v = vectors("revocation");
    let mut failures = Vec::new();
    for case in cases(&v, "cases") {
        let index = RevocationIndex::new();
        // As a verifier applies the feed: revoke entries are indexed, lifts
        // change nothing, unreadable entries are skipped.
        for raw in case["entries"].as_array().unwrap() {
            if let Ok(entry) = Entry::from_json(raw)
                && entry.kind == EntryKind::Revoke
            {
                index.upsert(Arc::new(entry));
            }
        }
        let claims: AccessClaims = serde_json::from_value(case["claims"].clone()).unwrap();
        let got = index
            .revokes(&claims, text(&case["kid"]))
            .map_or_else(|| "ok".to_owned(), |e| format!("revoked:{}", e.id));
        if got != text(&case["verdict"]) {
            failures.push(format!(
                "{}: expected {}, got {got}",
                case["name"], case["verdict"]
            ));
        }
    }
    for case in cases(&v, "blocks") {
        let entry = Entry::from_json(&case["entry"]).unwrap();
        let got = entry.blocks_at(case["now"].as_u64().unwrap());
        if got != case["blocks"].as_bool().unwrap() {
            failures.push(format!("{}: blocks_at gave {got}", case["name"]));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
