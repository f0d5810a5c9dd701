//! Checking a writ access token: the one rule the broker (for a token
//! presented again) and every SDK verifier apply. Reading the header comes
//! first and apart, because finding the key may mean fetching a JWKS.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::claims::AccessClaims;

/// The longest token accepted, in bytes: anything longer is refused before
/// it is parsed.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The algorithms writ signs with. A token naming any other is refused
/// before a key is looked up.
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::ES256, Algorithm::EdDSA];

/// Why a writ token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS with a JSON header and the claims writ mints.
    #[error("token is malformed")]
    Malformed,
    /// `typ` is not the one expected (`at+jwt` for an access token,
    /// `txntoken+jwt` for a transaction token).
    #[error("token is not of the expected type")]
    WrongType,
    /// `alg` is not one writ signs with, or not the key's.
    #[error("token is signed with an algorithm writ does not use")]
    Algorithm,
    /// No `kid`, or one the verifier does not know.
    #[error("token was not signed by this broker")]
    UnknownKey,
    /// The signature does not verify.
    #[error("signature is invalid")]
    BadSignature,
    /// `iss` is not the expected broker.
    #[error("token was issued by another broker")]
    WrongIssuer,
    /// `aud` is not the expected target.
    #[error("token is for another audience")]
    WrongAudience,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not yet valid")]
    NotYetValid,
    /// `exp - iat` is longer than the broker mints: the key may be stolen.
    #[error("token lives longer than this broker issues tokens")]
    Lifetime,
}

/// What the protected header says, once checked: the key to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `kid`.
    pub kid: String,
    /// `alg`, one of [`ALGORITHMS`].
    pub alg: Algorithm,
}

/// The `typ` of a writ access token (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Reads and checks the protected header: size, `typ` `at+jwt`, an
/// algorithm writ signs with, a `kid`.
pub fn header(token: &str) -> Result<Header, TokenError> {
    header_of_type(token, ACCESS_TOKEN_TYP)
}

/// The header check of any token writ signs, whose `typ` must be `typ`
/// exactly: a token of one kind is never accepted as another.
pub(crate) fn header_of_type(token: &str, typ: &str) -> Result<Header, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.typ.as_deref() != Some(typ) {
        return Err(TokenError::WrongType);
    }
    if !ALGORITHMS.contains(&header.alg) {
        return Err(TokenError::Algorithm);
    }
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    Ok(Header {
        kid,
        alg: header.alg,
    })
}

/// What a verifier expects of a token besides its signature.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `iss`: the broker.
    pub issuer: &'a str,
    /// `aud`, when the verifier serves one target (a resource server); the
    /// broker checks the audience per use instead.
    pub audience: Option<&'a str>,
    /// The verifier's time, seconds since the epoch.
    pub now: u64,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway: u64,
    /// The longest `exp - iat` the broker mints, when known; a longer-lived
    /// token was signed outside writ, with a stolen key.
    pub max_lifetime: Option<u64>,
}

/// Verifies a token's signature with `key` (whose algorithm is `alg`), then
/// its claims against `expected`. `header` must be the token's, from
/// [`header`].
pub fn verify(
    token: &str,
    header: &Header,
    key: &DecodingKey,
    alg: Algorithm,
    expected: &Expected<'_>,
) -> Result<AccessClaims, TokenError> {
    let claims: AccessClaims = decode(token, header, key, alg)?;
    check_claims(&claims, expected)?;
    Ok(claims)
}

/// The signature check and claims decoding every token kind shares; the
/// claims' own checks are the caller's.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    token: &str,
    header: &Header,
    key: &DecodingKey,
    alg: Algorithm,
) -> Result<T, TokenError> {
    if header.alg != alg {
        return Err(TokenError::Algorithm);
    }
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<T>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
            _ => TokenError::Malformed,
        })
}

/// The checks on verified claims: issuer, audience, validity window with
/// leeway (RFC 7519: valid only before `exp`), and lifetime.
pub fn check_claims(claims: &AccessClaims, expected: &Expected<'_>) -> Result<(), TokenError> {
    if claims.iss != expected.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if expected.audience.is_some_and(|aud| claims.aud != aud) {
        return Err(TokenError::WrongAudience);
    }
    check_window(
        Window {
            not_before: claims.nbf,
            iat: claims.iat,
            exp: claims.exp,
        },
        expected.now,
        expected.leeway,
        expected.max_lifetime,
    )
}

/// The times a token of any kind writ signs carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// The first second it is valid (`nbf`, or `iat` where there is none).
    pub not_before: u64,
    /// `iat`.
    pub iat: u64,
    /// `exp`: valid only before it (RFC 7519).
    pub exp: u64,
}

/// The validity window at `now` within `leeway`, and the lifetime against
/// the longest the broker mints.
pub(crate) fn check_window(
    window: Window,
    now: u64,
    leeway: u64,
    max_lifetime: Option<u64>,
) -> Result<(), TokenError> {
    if now >= window.exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if window.not_before > now.saturating_add(leeway) {
        return Err(TokenError::NotYetValid);
    }
    if max_lifetime.is_some_and(|max| window.exp.saturating_sub(window.iat) > max) {
        return Err(TokenError::Lifetime);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{AttestationKind, PrincipalType};

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "https://writ".into(),
            sub: "s".into(),
            aud: "db".into(),
            client_id: "s".into(),
            scope: "read".into(),
            iat: 100,
            nbf: 100,
            exp: 160,
            jti: "j".into(),
            attestation: Some(AttestationKind::Kubernetes),
            principal_type: Some(PrincipalType::Workload),
            attestation_issuer: None,
            act: None,
            ancestry: Vec::new(),
            cnf: None,
        }
    }

    fn expect(now: u64, leeway: u64) -> Expected<'static> {
        Expected {
            issuer: "https://writ",
            audience: Some("db"),
            now,
            leeway,
            max_lifetime: Some(60),
        }
    }

    #[test]
    fn the_window_is_before_exp_and_from_nbf_within_the_leeway() {
        let c = claims();
        assert_eq!(check_claims(&c, &expect(159, 0)), Ok(()));
        assert_eq!(check_claims(&c, &expect(160, 0)), Err(TokenError::Expired));
        assert_eq!(check_claims(&c, &expect(189, 30)), Ok(()));
        assert_eq!(check_claims(&c, &expect(190, 30)), Err(TokenError::Expired));
        assert_eq!(
            check_claims(&c, &expect(99, 0)),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(check_claims(&c, &expect(70, 30)), Ok(()));
    }

    #[test]
    fn issuer_audience_and_lifetime_are_checked() {
        let c = claims();
        let other = Expected {
            issuer: "https://evil",
            ..expect(120, 0)
        };
        assert_eq!(check_claims(&c, &other), Err(TokenError::WrongIssuer));
        let elsewhere = Expected {
            audience: Some("cache"),
            ..expect(120, 0)
        };
        assert_eq!(check_claims(&c, &elsewhere), Err(TokenError::WrongAudience));
        let long = AccessClaims { exp: 161, ..c };
        assert_eq!(
            check_claims(&long, &expect(120, 0)),
            Err(TokenError::Lifetime)
        );
    }

    #[test]
    fn headers_writ_does_not_sign_are_refused_before_any_key() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = |h: &str| format!("{}.{}.c2ln", b64(h), b64("{}"));
        assert_eq!(
            header(&token(r#"{"alg":"HS256","typ":"at+jwt","kid":"k"}"#)),
            Err(TokenError::Algorithm)
        );
        assert_eq!(
            header(&token(r#"{"alg":"ES256","typ":"JWT","kid":"k"}"#)),
            Err(TokenError::WrongType)
        );
        assert_eq!(
            header(&token(r#"{"alg":"ES256","typ":"at+jwt"}"#)),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            header("x".repeat(MAX_TOKEN_BYTES + 1).as_str()),
            Err(TokenError::Malformed)
        );
        assert!(header(&token(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k"}"#)).is_ok());
    }
}
