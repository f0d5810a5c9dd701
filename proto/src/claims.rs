//! The claims of a writ access token (CONTRACT section 3), typed: an
//! unknown attestation kind, principal type or confirmation member is a
//! malformed token, never a quiet default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a principal proved what it is; Cedar sees it as `context.attestation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttestationKind {
    /// A projected Kubernetes service-account token.
    Kubernetes,
    /// An OIDC token from a configured issuer.
    Oidc,
    /// A TLS client certificate chaining to `tls.client_ca`.
    Mtls,
    /// Peer credentials of a Unix-socket caller.
    Unix,
    /// A writ access token presented again to be narrowed.
    Writ,
    /// An enterprise IdP's Identity Assertion JWT Authorization Grant
    /// (draft-ietf-oauth-identity-assertion-authz-grant).
    #[serde(rename = "id-jag")]
    IdJag,
}

impl AttestationKind {
    /// The name policies, claims and audit records use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kubernetes => "kubernetes",
            Self::Oidc => "oidc",
            Self::Mtls => "mtls",
            Self::Unix => "unix",
            Self::Writ => "writ",
            Self::IdJag => "id-jag",
        }
    }

    /// Parses the name written in a writ token's `attestation` claim.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "kubernetes" => Some(Self::Kubernetes),
            "oidc" => Some(Self::Oidc),
            "mtls" => Some(Self::Mtls),
            "unix" => Some(Self::Unix),
            "writ" => Some(Self::Writ),
            "id-jag" => Some(Self::IdJag),
            _ => None,
        }
    }
}

/// The Cedar entity type of an attested principal (`principal_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum PrincipalType {
    /// A service, job or machine.
    #[default]
    Workload,
    /// An AI agent.
    Agent,
    /// A person (e.g. from the company's identity provider), for whom an
    /// agent may act.
    User,
}

impl PrincipalType {
    /// Every type a principal can have.
    pub const ALL: [Self; 3] = [Self::Workload, Self::Agent, Self::User];

    /// The Cedar type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workload => "Workload",
            Self::Agent => "Agent",
            Self::User => "User",
        }
    }

    /// Parses a Cedar type name written in a token claim.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Workload" => Some(Self::Workload),
            "Agent" => Some(Self::Agent),
            "User" => Some(Self::User),
            _ => None,
        }
    }
}

/// One level of an RFC 8693 actor chain: the agent acting (`sub`), the
/// issuer that attested it (`iss`), and whoever acted before it (`act`).
/// The newest actor is outermost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorChain {
    /// The acting agent.
    pub sub: String,
    /// The issuer of the agent's attestation (the kill switch's `issuer`
    /// selector matches it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The actor before this one, if the chain is longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<ActorChain>>,
}

impl ActorChain {
    /// A chain of one agent, in front of `prior` (the chain of the token it
    /// acts on, if that token was delegated already).
    pub fn new(sub: impl Into<String>, iss: Option<String>, prior: Option<ActorChain>) -> Self {
        Self {
            sub: sub.into(),
            iss,
            act: prior.map(Box::new),
        }
    }

    /// Every level, newest actor first.
    pub fn levels(&self) -> impl Iterator<Item = &ActorChain> {
        std::iter::successors(Some(self), |level| level.act.as_deref())
    }

    /// Every actor's `sub`, newest first.
    pub fn actors(&self) -> impl Iterator<Item = &str> {
        self.levels().map(|level| level.sub.as_str())
    }

    /// The issuer of every actor that names one, newest first.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.levels().filter_map(|level| level.iss.as_deref())
    }

    /// How many agents act in it.
    pub fn depth(&self) -> usize {
        self.levels().count()
    }
}

/// The key a token is bound to (`cnf`, RFC 7800).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Confirmation {
    /// The RFC 7638 thumbprint of a DPoP key (RFC 9449).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// The base64url SHA-256 of a TLS client certificate (RFC 8705).
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
    /// Members writ does not know. A token carrying any is bound to
    /// something no one here can check, so it is refused (fail closed).
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

impl Confirmation {
    /// Bound to a DPoP key with this thumbprint.
    pub fn dpop(jkt: impl Into<String>) -> Self {
        Self {
            jkt: Some(jkt.into()),
            ..Self::default()
        }
    }

    /// Bound to the client certificate with this thumbprint.
    pub fn certificate(x5t_s256: impl Into<String>) -> Self {
        Self {
            x5t_s256: Some(x5t_s256.into()),
            ..Self::default()
        }
    }
}

/// Claims of an RFC 9068 access token minted by writ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The broker that minted it.
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
    /// How the subject attested. writ always says; a resource server may
    /// meet tokens of a stand-in issuer that does not, and the broker
    /// refuses to derive a token from one that does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationKind>,
    /// The subject's Cedar type (present whenever `attestation` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<PrincipalType>,
    /// The `iss` of the attestation the token was minted from (the kill
    /// switch's `issuer` selector matches it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_issuer: Option<String>,
    /// RFC 8693 actor chain, newest actor outermost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<ActorChain>,
    /// The `jti`s of the writ tokens this one was narrowed or delegated
    /// from, nearest first: revoking any of them revokes this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestry: Vec<String>,
    /// Confirmation (key binding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

impl AccessClaims {
    /// Every `sub` in the `act` chain, newest actor first.
    pub fn actors(&self) -> impl Iterator<Item = &str> {
        self.act.iter().flat_map(ActorChain::actors)
    }

    /// This token's `jti` and ancestry: what a token derived from it carries.
    pub fn lineage(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.jti.as_str()).chain(self.ancestry.iter().map(String::as_str))
    }

    /// The granted scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }

    /// Whether it grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(extra: Value) -> Value {
        let mut v = json!({"iss": "https://writ", "sub": "s", "aud": "db", "client_id": "s",
            "scope": "read write", "iat": 1, "nbf": 1, "exp": 2, "jti": "j",
            "attestation": "kubernetes", "principal_type": "Workload"});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    }

    #[test]
    fn the_act_chain_lists_actors_and_issuers_newest_first() {
        let c: AccessClaims = serde_json::from_value(claims(json!({
            "act": {"sub": "b", "iss": "ib", "act": {"sub": "a", "iss": "ia"}}})))
        .unwrap();
        let act = c.act.as_ref().unwrap();
        assert_eq!(act.actors().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(act.issuers().collect::<Vec<_>>(), ["ib", "ia"]);
        assert_eq!(act.depth(), 2);
        assert!(c.has_scope("write") && !c.has_scope("admin"));
    }

    #[test]
    fn claims_round_trip_in_the_wire_form() {
        let wire = claims(
            json!({"act": {"sub": "b", "iss": "ib"}, "cnf": {"jkt": "t"},
            "ancestry": ["p"], "attestation_issuer": "https://k8s"}),
        );
        let c: AccessClaims = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), wire);
        assert_eq!(c.cnf, Some(Confirmation::dpop("t")));
    }

    #[test]
    fn unknown_values_are_malformed_not_defaults() {
        for extra in [
            json!({"attestation": "password"}),
            json!({"principal_type": "Robot"}),
            json!({"act": "agent"}),
            json!({"act": {"iss": "no sub"}}),
            json!({"cnf": "jkt"}),
        ] {
            assert!(
                serde_json::from_value::<AccessClaims>(claims(extra.clone())).is_err(),
                "{extra}"
            );
        }
        let odd: AccessClaims =
            serde_json::from_value(claims(json!({"cnf": {"x5t": "sha1"}}))).unwrap();
        assert!(odd.cnf.is_some_and(|c| c.unknown.contains_key("x5t")));
    }
}
