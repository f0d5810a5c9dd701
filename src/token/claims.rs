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
    /// RFC 8693 actor chain, newest actor outermost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Value>,
    /// Confirmation (key binding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Value>,
}

impl AccessClaims {
    /// What the kill switch checks about this token.
    pub fn facts(&self) -> TokenFacts<'_> {
        TokenFacts {
            jti: &self.jti,
            subject: &self.sub,
            audience: &self.aud,
            issuer: &self.iss,
            attestation_issuer: self.attestation_issuer.as_deref(),
            actors: self.actors(),
            issued_at: self.iat,
        }
    }

    /// Every `sub` in the `act` chain, newest actor first.
    pub fn actors(&self) -> Vec<&str> {
        act_chain(self.act.as_ref())
    }
}

/// Every `sub` in an RFC 8693 `act` chain, newest actor (outermost) first.
pub fn act_chain(act: Option<&Value>) -> Vec<&str> {
    let mut out = Vec::new();
    let mut next = act;
    while let Some(a) = next {
        if let Some(sub) = a.get("sub").and_then(Value::as_str) {
            out.push(sub);
        }
        next = a.get("act");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn act_chain_lists_actors_newest_first() {
        let act = serde_json::json!({"sub": "b", "act": {"sub": "a"}});
        assert_eq!(act_chain(Some(&act)), ["b", "a"]);
        assert!(act_chain(None).is_empty());
    }
}
