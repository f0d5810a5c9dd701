//! mTLS client certificates: the identity a certificate names. The listener
//! has already verified the chain to `tls.client_ca` and the validity period
//! during the handshake; this only reads the SPIFFE ID, refusing anything
//! ambiguous.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use writ_proto::claims::Confirmation;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::{AttestError, Attested, Attestor, AttrValue, Evidence};
use crate::model::{AttestationKind, EntityType, Principal};

/// Why a verified client certificate names no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertIdentityError {
    /// Not a parseable X.509 certificate.
    #[error("client certificate is malformed")]
    Malformed,
    /// No URI SAN, several, or other SAN forms beside it.
    #[error("client certificate must name exactly one SPIFFE ID and nothing else")]
    NotExactlyOneSpiffeId,
    /// The URI SAN is not a well-formed SPIFFE ID.
    #[error("client certificate URI SAN is not a SPIFFE ID")]
    NotSpiffe,
}

/// The identity of a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The SPIFFE ID in its URI SAN.
    pub spiffe_id: String,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub cert_sha256: String,
    /// The issuing CA's subject common name (the principal's `issuer`).
    pub issuer: String,
    /// `notAfter`, seconds since the epoch.
    pub expires_at: u64,
}

impl CertIdentity {
    /// The RFC 8705 thumbprint of the certificate: base64url(SHA-256(DER)).
    pub fn thumbprint(&self) -> String {
        let digest = hex::decode(&self.cert_sha256).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(digest)
    }

    /// The confirmation of a token bound to this certificate.
    pub fn confirmation(&self) -> Confirmation {
        Confirmation::certificate(self.thumbprint())
    }
}

/// Attests a caller by its client certificate (CONTRACT section 1):
/// principal = the SPIFFE ID, attributes `issuer`, `spiffe_id`, `cert_sha256`.
/// Only SPIFFE IDs in `server.trust_domain` are principals, and never a
/// `/unix/` path: those only the Unix socket's peer credentials prove. The
/// client CA could otherwise mint any workload of any cluster.
#[derive(Debug)]
pub struct MtlsAttestor<'a> {
    trust_domain: &'a str,
}

impl<'a> MtlsAttestor<'a> {
    /// An attestor of principals in `trust_domain`.
    pub fn new(trust_domain: &'a str) -> Self {
        Self { trust_domain }
    }

    /// Whether a certificate's identity may be a principal here.
    pub fn check(&self, id: &CertIdentity) -> Result<(), AttestError> {
        let rest = id.spiffe_id.strip_prefix("spiffe://").unwrap_or_default();
        let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        if domain != self.trust_domain {
            return Err(AttestError::ForeignIdentity(format!(
                "client certificate names a SPIFFE ID outside trust domain {}",
                self.trust_domain
            )));
        }
        if path == "unix" || path.starts_with("unix/") {
            return Err(AttestError::ForeignIdentity(
                "a client certificate cannot prove a Unix principal".into(),
            ));
        }
        Ok(())
    }
}

impl Attestor for MtlsAttestor<'_> {
    fn kind(&self) -> AttestationKind {
        AttestationKind::Mtls
    }

    fn attest(&self, evidence: &Evidence<'_>) -> Result<Attested, AttestError> {
        let Evidence::ClientCertificate(id) = evidence else {
            return Err(AttestError::Malformed);
        };
        self.check(id)?;
        let principal = Principal::new(id.spiffe_id.clone())
            .map_err(|_| AttestError::InvalidClaim("uri san"))?;
        let attributes = BTreeMap::from([
            ("issuer".to_owned(), AttrValue::String(id.issuer.clone())),
            (
                "spiffe_id".to_owned(),
                AttrValue::String(id.spiffe_id.clone()),
            ),
            (
                "cert_sha256".to_owned(),
                AttrValue::String(id.cert_sha256.clone()),
            ),
        ]);
        Ok(Attested {
            principal,
            entity_type: EntityType::Workload,
            kind: AttestationKind::Mtls,
            attributes,
            expires_at: id.expires_at,
        })
    }
}

/// Reads the one SPIFFE ID a certificate names (SPIFFE X.509-SVID rules:
/// exactly one URI SAN, `spiffe://<trust domain>/<path>`).
pub fn identity(cert_der: &[u8]) -> Result<CertIdentity, CertIdentityError> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|_| CertIdentityError::Malformed)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| CertIdentityError::Malformed)?
        .ok_or(CertIdentityError::NotExactlyOneSpiffeId)?;
    let [GeneralName::URI(uri)] = san.value.general_names.as_slice() else {
        return Err(CertIdentityError::NotExactlyOneSpiffeId);
    };
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or(CertIdentityError::NotSpiffe)?;
    let (trust_domain, path) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_domain = !trust_domain.is_empty()
        && trust_domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    let valid_path = !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        });
    if !valid_domain || !valid_path {
        return Err(CertIdentityError::NotSpiffe);
    }
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(CertIdentity {
        spiffe_id: (*uri).to_owned(),
        cert_sha256: crate::digest::sha256_hex(cert_der),
        issuer,
        expires_at: u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn cert(sans: Vec<SanType>) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    #[test]
    fn one_spiffe_uri_is_the_identity() {
        let id = identity(&cert(vec![uri("spiffe://writ.local/ops/alice")])).unwrap();
        assert_eq!(id.spiffe_id, "spiffe://writ.local/ops/alice");
        assert_eq!(id.cert_sha256.len(), 64);
    }

    #[test]
    fn none_two_or_mixed_sans_are_refused() {
        let two = cert(vec![uri("spiffe://a/x"), uri("spiffe://a/y")]);
        let mixed = cert(vec![
            uri("spiffe://a/x"),
            SanType::DnsName("a.example".try_into().unwrap()),
        ]);
        for der in [cert(vec![]), two, mixed] {
            assert_eq!(
                identity(&der),
                Err(CertIdentityError::NotExactlyOneSpiffeId)
            );
        }
    }

    #[test]
    fn uris_that_are_not_spiffe_ids_are_refused() {
        for u in [
            "https://a/x",
            "spiffe://a",
            "spiffe:///x",
            "spiffe://a/../x",
            "spiffe://A/x",
            "spiffe://a/x?q",
        ] {
            assert_eq!(
                identity(&cert(vec![uri(u)])),
                Err(CertIdentityError::NotSpiffe),
                "{u}"
            );
        }
        assert_eq!(identity(b"junk"), Err(CertIdentityError::Malformed));
    }
}
