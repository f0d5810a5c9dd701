//! Kubernetes projected service-account tokens.
//!
//! The principal is `spiffe://<trust_domain>/ns/<namespace>/sa/<name>`; the
//! claims under `kubernetes.io` become the attributes `namespace`,
//! `service_account`, `uid` and, when the token names one, `pod`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{AttestError, Attested, Attestor, AttrValue, Evidence, str_claim};
use crate::config::IssuerConfig;
use crate::model::{AttestationKind, EntityType, Principal};

pub(crate) struct KubernetesAttestor {
    trust_domain: String,
}

impl KubernetesAttestor {
    pub(crate) fn new(ic: &IssuerConfig) -> Self {
        Self {
            trust_domain: ic
                .spiffe_trust_domain()
                .unwrap_or("cluster.local")
                .to_owned(),
        }
    }
}

impl Attestor for KubernetesAttestor {
    fn kind(&self) -> AttestationKind {
        AttestationKind::Kubernetes
    }

    fn attest(&self, evidence: &Evidence<'_>) -> Result<Attested, AttestError> {
        let (issuer, claims, expires_at) = evidence.verified_jwt()?;
        let k8s = object(claims, "kubernetes.io")?;
        let namespace = dns_name(k8s, "namespace", "kubernetes.io.namespace")?;
        let sa = object(k8s, "serviceaccount")?;
        let sa_name = dns_name(sa, "name", "kubernetes.io.serviceaccount.name")?;
        // The subject must agree with the structured claims it duplicates.
        let expected_sub = format!("system:serviceaccount:{namespace}:{sa_name}");
        if str_claim(claims, "sub")? != expected_sub {
            return Err(AttestError::InvalidClaim("sub"));
        }
        let mut attributes = BTreeMap::new();
        attributes.insert("issuer".into(), AttrValue::String((*issuer).to_owned()));
        attributes.insert("namespace".into(), AttrValue::String(namespace.to_owned()));
        attributes.insert(
            "service_account".into(),
            AttrValue::String(sa_name.to_owned()),
        );
        if let Some(Value::String(uid)) = sa.get("uid") {
            attributes.insert("uid".into(), AttrValue::String(uid.clone()));
        }
        if let Some(Value::Object(pod)) = k8s.get("pod")
            && let Some(Value::String(name)) = pod.get("name")
        {
            attributes.insert("pod".into(), AttrValue::String(name.clone()));
        }
        let principal = Principal::new(format!(
            "spiffe://{}/ns/{namespace}/sa/{sa_name}",
            self.trust_domain
        ))
        .map_err(|_| AttestError::InvalidClaim("sub"))?;
        Ok(Attested {
            principal,
            entity_type: EntityType::Workload,
            kind: AttestationKind::Kubernetes,
            attributes,
            expires_at,
        })
    }
}

fn object<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a Map<String, Value>, AttestError> {
    match claims.get(name) {
        None => Err(AttestError::MissingClaim(name)),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(AttestError::InvalidClaim(name)),
    }
}

/// A Kubernetes object name (RFC 1123 subdomain): it goes into a SPIFFE
/// path, so `/` and anything else outside the grammar is refused.
fn dns_name<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    claim: &'static str,
) -> Result<&'a str, AttestError> {
    let Some(Value::String(s)) = m.get(key) else {
        return Err(AttestError::MissingClaim(claim));
    };
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.']);
    if ok {
        Ok(s)
    } else {
        Err(AttestError::InvalidClaim(claim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attest(claims: Value) -> Result<Attested, AttestError> {
        let a = KubernetesAttestor {
            trust_domain: "cluster.local".into(),
        };
        let claims = claims.as_object().cloned().unwrap_or_default();
        a.attest(&Evidence::VerifiedJwt {
            issuer: "https://k8s",
            claims: &claims,
            expires_at: 10,
        })
    }

    #[test]
    fn service_account_maps_to_spiffe_id_and_attributes() {
        let a = attest(json!({
            "sub": "system:serviceaccount:payments:api",
            "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "api", "uid": "u1"},
                              "pod": {"name": "api-7d9", "uid": "p1"}}
        }))
        .unwrap();
        assert_eq!(
            a.principal.as_str(),
            "spiffe://cluster.local/ns/payments/sa/api"
        );
        assert_eq!(
            a.attributes.get("pod"),
            Some(&AttrValue::String("api-7d9".into()))
        );
        assert_eq!(
            a.attributes.get("uid"),
            Some(&AttrValue::String("u1".into()))
        );
    }

    #[test]
    fn path_characters_in_names_are_refused() {
        let r = attest(json!({
            "sub": "system:serviceaccount:pay/../x:api",
            "kubernetes.io": {"namespace": "pay/../x", "serviceaccount": {"name": "api"}}
        }));
        assert_eq!(r, Err(AttestError::InvalidClaim("kubernetes.io.namespace")));
    }

    #[test]
    fn subject_must_agree_with_structured_claims() {
        let r = attest(json!({
            "sub": "system:serviceaccount:other:api",
            "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "api"}}
        }));
        assert_eq!(r, Err(AttestError::InvalidClaim("sub")));
    }
}
