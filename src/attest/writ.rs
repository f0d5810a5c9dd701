//! A writ access token presented again (to be narrowed, or as the subject
//! or actor of a delegation) attests the principal it was minted for. Its
//! signature, lifetime, binding and the kill switch are checked before;
//! this maps the verified claims to the principal, as every kind does.

use std::collections::BTreeMap;

use writ_proto::AccessClaims;

use super::{AttestError, Attested, Attestor, AttrValue, Evidence};
use crate::model::{AttestationKind, Principal};

/// Attests the principal of a verified writ token. The attestation issuer
/// travels with the token, so blocks by issuer still reach what is narrowed
/// or delegated from it; a token without one was attested by this broker.
#[derive(Debug)]
pub struct WritAttestor {
    broker: String,
}

impl WritAttestor {
    /// An attestor for tokens of the broker whose issuer is `broker`.
    pub fn new(broker: impl Into<String>) -> Self {
        Self {
            broker: broker.into(),
        }
    }
}

impl Attestor for WritAttestor {
    fn kind(&self) -> AttestationKind {
        AttestationKind::Writ
    }

    fn attest(&self, evidence: &Evidence<'_>) -> Result<Attested, AttestError> {
        let Evidence::WritToken(claims) = evidence else {
            return Err(AttestError::Malformed);
        };
        let principal =
            Principal::new(claims.sub.clone()).map_err(|_| AttestError::InvalidClaim("sub"))?;
        let entity_type = claims
            .principal_type
            .ok_or(AttestError::MissingClaim("principal_type"))?;
        let issuer = claims
            .attestation_issuer
            .clone()
            .unwrap_or_else(|| self.broker.clone());
        Ok(Attested {
            principal,
            entity_type,
            kind: AttestationKind::Writ,
            attributes: BTreeMap::from([("issuer".to_owned(), AttrValue::String(issuer))]),
            expires_at: claims.exp,
        })
    }
}

/// The evidence of a verified writ token.
pub(super) fn evidence(claims: &AccessClaims) -> Evidence<'_> {
    Evidence::WritToken(claims)
}
