//! The claims of a writ access token (CONTRACT section 3).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::revoke::TokenFacts;

/// Claims of an RFC 9068 access token minted by writ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// This broker.
    pub iss: String,
    /// The principal id.
    pub sub: String,
    /// The target id.
    pub aud: String,
    /// The acting client: the subject, or the newest actor when delegated.
    pub client_id: String,
    /// Granted scopes, space separated.
    pub scope: String,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
    /// 128 random bits, base64url.
    pub jti: String,
    /// How the subject attested (`kubernetes`, `oidc`, `writ`).
    pub attestation: String,
    /// The subject's Cedar type (`Workload` or `Agent`).
    pub principal_type: String,
    /// The `iss` of the attestation the token was minted from (the kill
    /// switch's `issuer` selector matches it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_issuer: Option<String>,
    /// RFC 8693 actor chain, newest actor outermost; each level names the
    /// agent (`sub`) and the issuer that attested it (`iss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Value>,
    /// The `jti`s of the writ tokens this one was narrowed or delegated
    /// from, nearest first: revoking any of them revokes this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestry: Vec<String>,
    /// Confirmation (key binding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Value>,
}

impl AccessClaims {
    /// What the kill switch checks about this token.
    pub fn facts(&self) -> TokenFacts<'_> {
        TokenFacts {
            jti: &self.jti,
            ancestors: &self.ancestry,
            subject: &self.sub,
            audience: &self.aud,
            issuer: &self.iss,
            attestation_issuer: self.attestation_issuer.as_deref(),
            actors: self.actors(),
            actor_issuers: act_issuers(self.act.as_ref()),
            issued_at: self.iat,
        }
    }

    /// Every `sub` in the `act` chain, newest actor first.
    pub fn actors(&self) -> Vec<&str> {
        act_chain(self.act.as_ref())
    }

    /// This token's `jti` and ancestry: what a token derived from it carries.
    pub fn lineage(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.jti.as_str()).chain(self.ancestry.iter().map(String::as_str))
    }
}

/// Every `iss` in an RFC 8693 `act` chain: the issuers that attested each agent.
pub fn act_issuers(act: Option<&Value>) -> Vec<&str> {
    act_levels(act, "iss")
}

/// Every `sub` in an RFC 8693 `act` chain, newest actor (outermost) first.
pub fn act_chain(act: Option<&Value>) -> Vec<&str> {
    act_levels(act, "sub")
}

fn act_levels<'a>(act: Option<&'a Value>, member: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut next = act;
    while let Some(a) = next {
        out.extend(a.get(member).and_then(Value::as_str));
        next = a.get("act");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn act_chain_lists_actors_newest_first() {
        let act = serde_json::json!({"sub": "b", "iss": "ib", "act": {"sub": "a", "iss": "ia"}});
        assert_eq!(act_chain(Some(&act)), ["b", "a"]);
        assert_eq!(act_issuers(Some(&act)), ["ib", "ia"]);
        assert!(act_chain(None).is_empty());
    }
}
