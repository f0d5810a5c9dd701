//! Identity Assertion JWT Authorization Grants (ID-JAG,
//! draft-ietf-oauth-identity-assertion-authz-grant): an enterprise IdP
//! asserts that its user lets a client (an AI agent) reach this broker's
//! targets. writ reads one as a delegation: the user is the subject (Cedar
//! `User`), the client the agent acting for them (`Agent`), both attested
//! by the IdP's signature (`attestation` `id-jag`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::jwt::Verified;
use super::{AttestError, Attested, AttrValue, str_claim};
use crate::model::{AttestationKind, EntityType, Principal};

/// The JWS `typ` of an ID-JAG.
pub const TYP: &str = "oauth-id-jag+jwt";

/// The longest an assertion may still live when presented: its `jti` is
/// remembered until it expires, so a longer one would hold memory (and a
/// stolen one would be usable) for longer than a grant needs.
pub const MAX_REMAINING_SECS: u64 = 600;

/// The longest `jti` accepted.
const MAX_JTI_BYTES: usize = 256;

/// What a verified ID-JAG grants.
#[derive(Debug, Clone)]
pub struct IdJagGrant {
    /// The user (`sub`): the subject of the token.
    pub user: Arc<Attested>,
    /// The client the IdP issued it to (`client_id`): the agent acting.
    pub client: Arc<Attested>,
    /// The IdP (`iss`).
    pub issuer: String,
    /// `jti`: accepted once.
    pub jti: String,
    /// `exp`.
    pub expires_at: u64,
    /// `scope`, when the IdP limited the grant: what writ mints stays within it.
    pub scope: Option<String>,
    /// `resource`, when the IdP named the target: only that target.
    pub resource: Option<String>,
}

/// The grant a verified assertion carries, at `now`.
pub(super) fn grant(verified: &Verified, now: u64) -> Result<IdJagGrant, AttestError> {
    let claims = &verified.claims;
    let sub = str_claim(claims, "sub")?;
    let client_id = str_claim(claims, "client_id")?;
    let jti = str_claim(claims, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(AttestError::InvalidClaim("jti"));
    }
    if verified.expires_at > now.saturating_add(MAX_REMAINING_SECS) {
        return Err(AttestError::InvalidClaim("exp"));
    }
    let optional = |name: &'static str| match claims.get(name) {
        None => Ok(None),
        Some(Value::String(v)) => Ok(Some(v.clone())),
        Some(_) => Err(AttestError::InvalidClaim(name)),
    };
    let issuer = verified.issuer.clone();
    let mut attributes: BTreeMap<String, AttrValue> = claims
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), AttrValue::String(v.as_str()?.to_owned()))))
        .collect();
    attributes.insert("issuer".into(), AttrValue::String(issuer.clone()));
    let user = Attested {
        principal: Principal::new(sub.to_owned()).map_err(|_| AttestError::InvalidClaim("sub"))?,
        entity_type: EntityType::User,
        kind: AttestationKind::IdJag,
        attributes,
        expires_at: verified.expires_at,
    };
    let client = Attested {
        principal: Principal::new(client_id.to_owned())
            .map_err(|_| AttestError::InvalidClaim("client_id"))?,
        entity_type: EntityType::Agent,
        kind: AttestationKind::IdJag,
        attributes: BTreeMap::from([("issuer".to_owned(), AttrValue::String(issuer.clone()))]),
        expires_at: verified.expires_at,
    };
    Ok(IdJagGrant {
        user: Arc::new(user),
        client: Arc::new(client),
        issuer,
        jti: jti.to_owned(),
        expires_at: verified.expires_at,
        scope: optional("scope")?,
        resource: optional("resource")?,
    })
}
