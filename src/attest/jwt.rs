//! Signature and claim checks shared by every JWT-based attestation kind.

use std::sync::Arc;
use writ_proto::jws::{Compact, decode_segment};

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::{AttestError, KeySource, str_claim};
use crate::clock::Clock;

/// Attestation tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 60;

/// The only algorithms writ accepts from issuers; never `none` or HMAC.
const ALLOWED: [(&str, Algorithm); 5] = [
    ("RS256", Algorithm::RS256),
    ("PS256", Algorithm::PS256),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// A JWT split and decoded but not yet trusted: enough to pick the issuer,
/// key and algorithm.
pub(crate) struct Unverified {
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
    payload: Map<String, Value>,
}

impl Unverified {
    /// Splits a compact JWS and decodes header and payload.
    pub(crate) fn parse(token: &str) -> Result<Self, AttestError> {
        let compact = Compact::split(token).ok_or(AttestError::Malformed)?;
        let header: Map<String, Value> = decode_json(compact.header)?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => ALLOWED
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| *a)
                .ok_or(AttestError::AlgorithmNotAllowed)?,
            _ => return Err(AttestError::Malformed),
        };
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(AttestError::Malformed),
        };
        let typ = match header.get("typ") {
            None => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(_) => return Err(AttestError::Malformed),
        };
        Ok(Self {
            alg,
            kid,
            typ,
            payload: decode_json(compact.payload)?,
        })
    }

    /// The header's `typ`, if any.
    pub(crate) fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }

    /// The claimed `iss`, used only to pick which issuer verifies the token.
    pub(crate) fn issuer(&self) -> Result<&str, AttestError> {
        str_claim(&self.payload, "iss")
    }
}

fn decode_json(segment: &str) -> Result<Map<String, Value>, AttestError> {
    decode_segment(segment).ok_or(AttestError::Malformed)
}

/// Claims whose signature, issuer, audience and validity window were checked.
pub(crate) struct Verified {
    pub(crate) issuer: String,
    pub(crate) claims: Map<String, Value>,
    pub(crate) expires_at: u64,
}

/// Verifies tokens of one issuer: signature by a key from its JWKS, then
/// `iss`, `aud`, `exp`, `nbf` and `iat` against writ's clock.
pub struct JwtVerifier {
    issuer: String,
    audience: String,
    keys: KeySource,
    clock: Arc<dyn Clock>,
}

impl JwtVerifier {
    /// A verifier for tokens with this `iss` and `aud`.
    pub fn new(issuer: &str, audience: &str, keys: KeySource, clock: Arc<dyn Clock>) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys,
            clock,
        }
    }

    /// The issuer's key source.
    pub fn keys(&self) -> &KeySource {
        &self.keys
    }

    pub(crate) async fn verify(
        &self,
        token: &str,
        unverified: &Unverified,
    ) -> Result<Verified, AttestError> {
        let key = self
            .keys
            .find(unverified.kid.as_deref(), unverified.alg)
            .await?;
        // Time and audience are checked below against writ's own clock.
        let mut validation = Validation::new(unverified.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding(), &validation)
            .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => AttestError::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => AttestError::AlgorithmNotAllowed,
            _ => AttestError::Malformed,
        })?;
        let claims = data.claims;
        if str_claim(&claims, "iss")? != self.issuer {
            return Err(AttestError::UnknownIssuer);
        }
        if !audience_matches(claims.get("aud"), &self.audience)? {
            return Err(AttestError::WrongAudience);
        }
        let now = self.clock.unix_now();
        let exp = time_claim(&claims, "exp")?.ok_or(AttestError::MissingClaim("exp"))?;
        if now > exp.saturating_add(LEEWAY_SECS) {
            return Err(AttestError::Expired);
        }
        if let Some(nbf) = time_claim(&claims, "nbf")?
            && nbf > now.saturating_add(LEEWAY_SECS)
        {
            return Err(AttestError::NotYetValid);
        }
        if let Some(iat) = time_claim(&claims, "iat")?
            && iat > now.saturating_add(LEEWAY_SECS)
        {
            return Err(AttestError::IssuedInFuture);
        }
        Ok(Verified {
            issuer: self.issuer.clone(),
            claims,
            expires_at: exp,
        })
    }
}

fn audience_matches(aud: Option<&Value>, expected: &str) -> Result<bool, AttestError> {
    match aud {
        None => Err(AttestError::MissingClaim("aud")),
        Some(Value::String(s)) => Ok(s == expected),
        Some(Value::Array(items)) => Ok(items.iter().any(|v| v.as_str() == Some(expected))),
        Some(_) => Err(AttestError::InvalidClaim("aud")),
    }
}

/// A NumericDate claim; fractional seconds are truncated.
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, AttestError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| *f >= 0.0 && f.is_finite())
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or(AttestError::InvalidClaim(name)),
        Some(_) => Err(AttestError::InvalidClaim(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn seg(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn alg_none_and_hmac_are_refused_before_key_lookup() {
        for alg in ["none", "HS256", "HS512", "RS512"] {
            let t = format!(
                "{}.{}.",
                seg(&format!(r#"{{"alg":"{alg}"}}"#)),
                seg(r#"{"iss":"x"}"#)
            );
            assert!(
                matches!(Unverified::parse(&t), Err(AttestError::AlgorithmNotAllowed)),
                "{alg}"
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for t in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &format!("{}.{}.x", seg("[]"), seg("{}")),
        ] {
            assert!(
                matches!(Unverified::parse(t), Err(AttestError::Malformed)),
                "{t}"
            );
        }
    }

    #[test]
    fn audience_may_be_string_or_array() {
        assert!(audience_matches(Some(&Value::from("writ")), "writ").unwrap());
        assert!(audience_matches(Some(&serde_json::json!(["a", "writ"])), "writ").unwrap());
        assert!(!audience_matches(Some(&serde_json::json!(["a"])), "writ").unwrap());
        assert!(audience_matches(None, "writ").is_err());
    }

    mod properties {
        //! Property tests (issue 11, item 18): the split-and-decode step every
        //! attestation token goes through before any key is looked up.

        use proptest::prelude::*;

        use super::*;

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,16}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                    prop::collection::btree_map(".{0,8}", inner, 0..5)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Headers that are usually objects with an `alg` and maybe a `kid`.
        fn header() -> impl Strategy<Value = Value> {
            let alg = prop_oneof![
                prop::sample::select(vec!["RS256", "PS256", "ES256", "ES384", "EdDSA"])
                    .prop_map(Value::from),
                prop::sample::select(vec!["none", "HS256", "RS512", "es256", ""])
                    .prop_map(Value::from),
                ".{0,8}".prop_map(Value::from),
                json(),
            ];
            let kid = prop_oneof![
                Just(None),
                ".{0,16}".prop_map(|k| Some(Value::from(k))),
                json().prop_map(Some),
            ];
            let object = (
                proptest::option::of(alg),
                kid,
                prop::collection::btree_map("[a-z]{1,4}", json(), 0..3),
            )
                .prop_map(|(alg, kid, extra)| {
                    let mut m: Map<String, Value> = extra.into_iter().collect();
                    if let Some(alg) = alg {
                        m.insert("alg".into(), alg);
                    }
                    if let Some(kid) = kid {
                        m.insert("kid".into(), kid);
                    }
                    Value::Object(m)
                });
            prop_oneof![4 => object, 1 => json()]
        }

        /// What [`Unverified::parse`] must answer for these decoded parts.
        fn oracle(
            header: &Value,
            payload: &Value,
        ) -> Result<(Algorithm, Option<String>), AttestError> {
            let h = header.as_object().ok_or(AttestError::Malformed)?;
            let alg = match h.get("alg") {
                Some(Value::String(name)) => ALLOWED
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, a)| *a)
                    .ok_or(AttestError::AlgorithmNotAllowed)?,
                _ => return Err(AttestError::Malformed),
            };
            let kid = match h.get("kid") {
                None => None,
                Some(Value::String(k)) => Some(k.clone()),
                Some(_) => return Err(AttestError::Malformed),
            };
            if !payload.is_object() {
                return Err(AttestError::Malformed);
            }
            Ok((alg, kid))
        }

        proptest! {
            #![proptest_config(crate::proptest_config(256))]

            #[test]
            fn arbitrary_text_is_malformed_or_refused(token in prop_oneof![
                9 => ".{0,1024}",
                1 => prop::collection::vec(any::<char>(), 0..=16 * 1024).prop_map(String::from_iter),
                4 => "[A-Za-z0-9_.-]{0,256}",
            ]) {
                match Unverified::parse(&token) {
                    Ok(_) | Err(AttestError::Malformed | AttestError::AlgorithmNotAllowed) => {}
                    Err(other) => prop_assert!(false, "unexpected error {other:?}"),
                }
            }

            #[test]
            fn decoded_parts_get_the_right_answer(header in header(), payload in json(), sig in "[A-Za-z0-9_-]{0,64}") {
                let token = format!(
                    "{}.{}.{sig}",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(payload.to_string()),
                );
                match (Unverified::parse(&token), oracle(&header, &payload)) {
                    (Ok(u), Ok((alg, kid))) => {
                        prop_assert_eq!(u.alg, alg);
                        prop_assert_eq!(&u.kid, &kid);
                        let expected = match payload.get("iss") {
                            None => Err(AttestError::MissingClaim("iss")),
                            Some(Value::String(s)) => Ok(s.as_str()),
                            Some(_) => Err(AttestError::InvalidClaim("iss")),
                        };
                        prop_assert_eq!(u.issuer(), expected);
                    }
                    (Err(got), Err(want)) => prop_assert_eq!(got, want),
                    (got, want) => prop_assert!(false, "got {:?}, want {want:?}", got.map(|u| u.alg)),
                }
            }
        }
    }
}
