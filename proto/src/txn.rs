//! Transaction tokens (draft-ietf-oauth-transaction-tokens): the short-lived
//! JWT that carries who a call chain acts for, and why, from one workload to
//! the next inside a trust domain. The broker mints them and checks them when
//! one comes back to be replaced; SDKs check them from the `Txn-Token`
//! header. Both with [`header`] and [`verify`], so a txn token is never taken
//! for an access token, nor the reverse (`typ` differs and both check it).

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::claims::{ActorChain, AttestationKind, PrincipalType};
use crate::revocation::{Signed, TokenFacts};
use crate::token::{self, Header, TokenError};

/// The JWS `typ` of a transaction token.
pub const TXN_TOKEN_TYP: &str = "txntoken+jwt";

/// The RFC 8693 token type of a transaction token.
pub const TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:txn_token";

/// The HTTP header a workload passes a transaction token in.
pub const HEADER: &str = "txn-token";

/// Claims of a transaction token minted by writ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnClaims {
    /// The broker that minted it.
    pub iss: String,
    /// Issued at.
    pub iat: u64,
    /// Expiry: a transaction token lives about a minute.
    pub exp: u64,
    /// The trust domain it is valid in (`server.trust_domain`).
    pub aud: String,
    /// The call chain's id: kept when the token is replaced down the chain.
    pub txn: String,
    /// The principal the transaction acts for.
    pub sub: String,
    /// The purpose: the scopes granted, space separated.
    pub purp: String,
    /// 128 random bits, base64url.
    pub jti: String,
    /// The request context (`rctx`): what the requester said of the
    /// originating request, plus `req_wl`, the requesting workloads in call
    /// order, which writ alone writes.
    #[serde(default)]
    pub rctx: Map<String, Value>,
    /// The transaction context (`tctx`): the details the requester gave,
    /// immutable down the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tctx: Option<Map<String, Value>>,
    /// How the subject attested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationKind>,
    /// The subject's Cedar type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<PrincipalType>,
    /// The `iss` of the attestation behind the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_issuer: Option<String>,
    /// The agents acting for the subject, when the transaction began from a
    /// delegated token (the kill switch's `actor` selector reaches it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<ActorChain>,
    /// The `jti`s of the tokens it derives from (the access token it was
    /// minted from, the txn tokens it replaced), nearest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestry: Vec<String>,
}

impl TxnClaims {
    /// The requesting workloads, first to last (`rctx.req_wl`, a string
    /// when there is one, as the draft allows).
    pub fn requesting_workloads(&self) -> Vec<&str> {
        match self.rctx.get("req_wl") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// The purposes (scopes) it was granted for.
    pub fn purposes(&self) -> impl Iterator<Item = &str> {
        self.purp.split(' ').filter(|s| !s.is_empty())
    }

    /// This token's `jti` and ancestry: what a replacement carries.
    pub fn lineage(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.jti.as_str()).chain(self.ancestry.iter().map(String::as_str))
    }

    /// What the kill switch matches: the same selectors as an access
    /// token's, with the trust domain as the audience.
    pub fn facts<'a>(&'a self, kid: &'a str) -> TokenFacts<'a> {
        TokenFacts::signed(
            Signed {
                jti: &self.jti,
                ancestors: &self.ancestry,
                subject: &self.sub,
                audience: &self.aud,
                iss: &self.iss,
                attestation_issuer: self.attestation_issuer.as_deref(),
                act: self.act.as_ref(),
                issued_at: self.iat,
            },
            kid,
        )
    }
}

/// What a verifier expects of a transaction token besides its signature.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `iss`: the broker.
    pub issuer: &'a str,
    /// `aud`: the trust domain.
    pub trust_domain: &'a str,
    /// The verifier's time, seconds since the epoch.
    pub now: u64,
    /// Clock skew tolerated on `exp` and `iat`, in seconds.
    pub leeway: u64,
    /// The longest `exp - iat` the broker mints transaction tokens for.
    pub max_lifetime: Option<u64>,
}

/// Reads and checks the protected header: `typ` `txntoken+jwt`, an
/// algorithm writ signs with, a `kid`.
pub fn header(token: &str) -> Result<Header, TokenError> {
    token::header_of_type(token, TXN_TOKEN_TYP)
}

/// Verifies a transaction token's signature with `key`, then its claims.
pub fn verify(
    token: &str,
    header: &Header,
    key: &DecodingKey,
    alg: Algorithm,
    expected: &Expected<'_>,
) -> Result<TxnClaims, TokenError> {
    let claims: TxnClaims = token::decode(token, header, key, alg)?;
    check_claims(&claims, expected)?;
    Ok(claims)
}

/// Issuer, trust domain, validity window (valid only before `exp`, not
/// issued in the future) and lifetime.
pub fn check_claims(claims: &TxnClaims, expected: &Expected<'_>) -> Result<(), TokenError> {
    if claims.iss != expected.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if claims.aud != expected.trust_domain {
        return Err(TokenError::WrongAudience);
    }
    token::check_window(
        token::Window {
            not_before: claims.iat,
            iat: claims.iat,
            exp: claims.exp,
        },
        expected.now,
        expected.leeway,
        expected.max_lifetime,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> TxnClaims {
        serde_json::from_value(json!({
            "iss": "https://writ", "iat": 100, "exp": 160, "aud": "example.org",
            "txn": "t1", "sub": "spiffe://example.org/ns/a/sa/b", "purp": "checkout",
            "jti": "j", "rctx": {"req_wl": ["gw", "orders"], "req_ip": "10.0.0.1"},
            "ancestry": ["a1"]
        }))
        .unwrap()
    }

    fn expect(now: u64) -> Expected<'static> {
        Expected {
            issuer: "https://writ",
            trust_domain: "example.org",
            now,
            leeway: 0,
            max_lifetime: Some(60),
        }
    }

    #[test]
    fn the_window_issuer_domain_and_lifetime_are_checked() {
        let c = claims();
        assert_eq!(check_claims(&c, &expect(159)), Ok(()));
        assert_eq!(check_claims(&c, &expect(160)), Err(TokenError::Expired));
        assert_eq!(check_claims(&c, &expect(99)), Err(TokenError::NotYetValid));
        let elsewhere = Expected {
            trust_domain: "other.org",
            ..expect(120)
        };
        assert_eq!(check_claims(&c, &elsewhere), Err(TokenError::WrongAudience));
        let foreign = Expected {
            issuer: "https://evil",
            ..expect(120)
        };
        assert_eq!(check_claims(&c, &foreign), Err(TokenError::WrongIssuer));
        let long = TxnClaims { exp: 161, ..c };
        assert_eq!(check_claims(&long, &expect(120)), Err(TokenError::Lifetime));
    }

    #[test]
    fn the_requesting_workloads_read_in_either_form() {
        let mut c = claims();
        assert_eq!(c.requesting_workloads(), ["gw", "orders"]);
        c.rctx.insert("req_wl".into(), json!("gw"));
        assert_eq!(c.requesting_workloads(), ["gw"]);
        assert_eq!(c.lineage().collect::<Vec<_>>(), ["j", "a1"]);
    }

    #[test]
    fn an_access_token_header_is_not_a_txn_token_header() {
        use base64::Engine;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = |typ: &str| {
            format!(
                "{}.{}.c2ln",
                b64(json!({"alg": "ES256", "kid": "k", "typ": typ})),
                b64(json!({}))
            )
        };
        assert_eq!(header(&token("at+jwt")), Err(TokenError::WrongType));
        assert!(header(&token("txntoken+jwt")).is_ok());
        assert_eq!(
            token::header(&token("txntoken+jwt")),
            Err(TokenError::WrongType)
        );
    }
}
