//! Any OIDC token (CI systems, clouds, agent platforms).
//!
//! The principal id comes from the issuer's `subject` template, e.g.
//! `repo:{repository}:ref:{ref}`, where each `{name}` is a top-level string
//! claim. Every top-level string claim is offered as an attribute; the policy
//! layer keeps those the schema declares on the entity type.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{AttestError, Attested, Attestor, AttrValue, Evidence};
use crate::config::IssuerConfig;
use crate::model::{AttestationKind, EntityType, Principal};

#[derive(Debug, PartialEq)]
enum Piece {
    Literal(String),
    Claim(String),
}

pub(crate) struct OidcAttestor {
    template: Vec<Piece>,
    entity_type: EntityType,
    /// `spiffe://<trust_domain>/`: the only SPIFFE ids this issuer may name.
    spiffe_prefix: Option<String>,
}

impl OidcAttestor {
    pub(crate) fn new(ic: &IssuerConfig) -> Result<Self, String> {
        Ok(Self {
            template: parse_template(&ic.subject)?,
            entity_type: ic.entity_type,
            spiffe_prefix: ic.trust_domain.as_ref().map(|td| format!("spiffe://{td}/")),
        })
    }
}

fn parse_template(t: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("subject template {t:?} has an unclosed '{{'"))?;
        let name = &rest[open + 1..open + close];
        if name.is_empty() || name.contains('{') {
            return Err(format!(
                "subject template {t:?} has an empty or nested placeholder"
            ));
        }
        pieces.push(Piece::Claim(name.to_owned()));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.to_owned()));
    }
    if !pieces.iter().any(|p| matches!(p, Piece::Claim(_))) {
        return Err(format!("subject template {t:?} names no claim"));
    }
    Ok(pieces)
}

impl Attestor for OidcAttestor {
    fn kind(&self) -> AttestationKind {
        AttestationKind::Oidc
    }

    fn attest(&self, evidence: &Evidence<'_>) -> Result<Attested, AttestError> {
        let (issuer, claims, expires_at) = evidence.verified_jwt()?;
        let mut id = String::new();
        for piece in &self.template {
            match piece {
                Piece::Literal(l) => id.push_str(l),
                Piece::Claim(name) => match claims.get(name) {
                    Some(Value::String(v)) if !v.is_empty() => id.push_str(v),
                    _ => return Err(AttestError::MissingClaim("subject template claim")),
                },
            }
        }
        // A SPIFFE id outside this issuer's own trust domain would let it
        // impersonate principals another issuer attests.
        if id.to_ascii_lowercase().starts_with("spiffe://")
            && !self
                .spiffe_prefix
                .as_deref()
                .is_some_and(|p| id.starts_with(p))
        {
            return Err(AttestError::InvalidClaim("sub"));
        }
        let principal = Principal::new(id).map_err(|_| AttestError::InvalidClaim("sub"))?;
        let mut attributes: BTreeMap<String, AttrValue> = claims
            .iter()
            .filter_map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), AttrValue::String(s.to_owned())))
            })
            .collect();
        // `issuer` is always the verified `iss`, never a claim of that name.
        attributes.insert("issuer".into(), AttrValue::String((*issuer).to_owned()));
        Ok(Attested {
            principal,
            entity_type: self.entity_type,
            kind: AttestationKind::Oidc,
            attributes,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_renders_claims() {
        let a = OidcAttestor {
            template: parse_template("repo:{repository}:ref:{ref}").unwrap(),
            entity_type: EntityType::Workload,
            spiffe_prefix: None,
        };
        let claims = json!({"repository": "acme/api", "ref": "main", "issuer": "spoof", "n": 1});
        let claims = claims.as_object().cloned().unwrap_or_default();
        let at = a
            .attest(&Evidence::VerifiedJwt {
                issuer: "https://ci",
                claims: &claims,
                expires_at: 1,
            })
            .unwrap();
        assert_eq!(at.principal.as_str(), "repo:acme/api:ref:main");
        assert_eq!(
            at.attributes.get("issuer"),
            Some(&AttrValue::String("https://ci".into()))
        );
        assert!(!at.attributes.contains_key("n"));
    }

    #[test]
    fn spiffe_ids_outside_the_issuer_trust_domain_are_refused() {
        let attest = |prefix: Option<&str>, sub: &str| {
            let a = OidcAttestor {
                template: parse_template("{sub}").unwrap(),
                entity_type: EntityType::Workload,
                spiffe_prefix: prefix.map(str::to_owned),
            };
            let claims = json!({ "sub": sub });
            let claims = claims.as_object().cloned().unwrap_or_default();
            a.attest(&Evidence::VerifiedJwt {
                issuer: "https://ci",
                claims: &claims,
                expires_at: 1,
            })
        };
        let k8s_id = "spiffe://cluster.local/ns/payments/sa/api";
        assert_eq!(
            attest(None, k8s_id).err(),
            Some(AttestError::InvalidClaim("sub"))
        );
        assert_eq!(
            attest(Some("spiffe://ci.example/"), k8s_id).err(),
            Some(AttestError::InvalidClaim("sub"))
        );
        assert!(attest(Some("spiffe://ci.example/"), "spiffe://ci.example/job/1").is_ok());
        assert!(attest(None, "user-42").is_ok());
    }

    #[test]
    fn bad_templates_are_refused_at_startup() {
        for t in ["{", "plain", "a{}b", "{a{b}}"] {
            assert!(parse_template(t).is_err(), "{t}");
        }
    }
}
