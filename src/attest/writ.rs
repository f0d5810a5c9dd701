//! A writ access token (or transaction token) presented again (to be narrowed, or as the subject
//! or actor of a delegation) attests the principal it was minted for. Its
//! signature, lifetime, binding and the kill switch are checked before;
//! this maps the verified claims to the principal, as every kind does.

use std::collections::BTreeMap;

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
        let (sub, principal_type, attestation_issuer, exp) = match evidence {
            Evidence::WritToken(c) => (&c.sub, c.principal_type, &c.attestation_issuer, c.exp),
            Evidence::TxnToken(c) => (&c.sub, c.principal_type, &c.attestation_issuer, c.exp),
            _ => return Err(AttestError::Malformed),
        };
        let principal =
            Principal::new(sub.clone()).map_err(|_| AttestError::InvalidClaim("sub"))?;
        let entity_type = principal_type.ok_or(AttestError::MissingClaim("principal_type"))?;
        let issuer = attestation_issuer
            .clone()
            .unwrap_or_else(|| self.broker.clone());
        Ok(Attested {
            principal,
            entity_type,
            kind: AttestationKind::Writ,
            attributes: BTreeMap::from([("issuer".to_owned(), AttrValue::String(issuer))]),
            expires_at: exp,
        })
    }
}
