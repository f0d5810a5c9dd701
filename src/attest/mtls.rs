//! mTLS client certificates: the identity a certificate names. The listener
//! has already verified the chain to `tls.client_ca` and the validity period
//! during the handshake; this only reads the SPIFFE ID, refusing anything
//! ambiguous.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use spiffe::SpiffeId;
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

/// The longest SPIFFE ID a certificate may name, in bytes (the SPIFFE ID
/// specification's limit; the `spiffe` crate checks it only on IDs it
/// builds, not on IDs it parses).
pub const MAX_SPIFFE_ID_BYTES: usize = 2048;

/// The SPIFFE ID `uri` names, if it is one an X.509-SVID may carry: well
/// formed (lower-case trust domain of `[a-z0-9.-_]`, path segments of
/// `[A-Za-z0-9.-_]`, no empty, `.` or `..` segment, no query, fragment,
/// port or user info), with a path (a workload, not a whole trust domain),
/// at most [`MAX_SPIFFE_ID_BYTES`], and written exactly as its canonical
/// form: the crate folds an upper-case scheme or trust domain to lower
/// case, and a certificate naming one is refused rather than read as
/// another ID.
fn svid_id(uri: &str) -> Option<SpiffeId> {
    if uri.len() > MAX_SPIFFE_ID_BYTES {
        return None;
    }
    let id = SpiffeId::new(uri).ok()?;
    (!id.path().is_empty() && id.to_string() == uri).then_some(id)
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
        let Some(id) =
            svid_id(&id.spiffe_id).filter(|id| id.trust_domain_name() == self.trust_domain)
        else {
            return Err(AttestError::ForeignIdentity(format!(
                "client certificate names a SPIFFE ID outside trust domain {}",
                self.trust_domain
            )));
        };
        // The first path segment: "/unix/uid/0" splits as "", "unix", ...
        if id.path().split('/').nth(1) == Some("unix") {
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
    svid_id(uri).ok_or(CertIdentityError::NotSpiffe)?;
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
            "spiffe://a/x#f",
            "spiffe://a:8443/x",
            "spiffe://u@a/x",
            "spiffe://a/x/",
            "spiffe://a//x",
            "spiffe://a/./x",
            "spiffe://a/x%41",
            "SPIFFE://a/x",
        ] {
            assert_eq!(
                identity(&cert(vec![uri(u)])),
                Err(CertIdentityError::NotSpiffe),
                "{u}"
            );
        }
        assert_eq!(identity(b"junk"), Err(CertIdentityError::Malformed));
    }

    #[test]
    fn a_spiffe_id_longer_than_2048_bytes_is_refused() {
        let prefix = "spiffe://writ.local/";
        let at_limit = format!("{prefix}{}", "a".repeat(MAX_SPIFFE_ID_BYTES - prefix.len()));
        let over = format!("{at_limit}a");
        assert_eq!(
            identity(&cert(vec![uri(&at_limit)])).unwrap().spiffe_id,
            at_limit
        );
        assert_eq!(
            identity(&cert(vec![uri(&over)])),
            Err(CertIdentityError::NotSpiffe)
        );
    }

    #[test]
    fn only_principals_of_the_trust_domain_and_never_unix_ones_pass() {
        let id = |spiffe_id: &str| CertIdentity {
            spiffe_id: spiffe_id.into(),
            cert_sha256: String::new(),
            issuer: String::new(),
            expires_at: 0,
        };
        let attestor = MtlsAttestor::new("writ.local");
        for ok in ["spiffe://writ.local/ops/alice", "spiffe://writ.local/unixy"] {
            assert!(attestor.check(&id(ok)).is_ok(), "{ok}");
        }
        for refused in [
            "spiffe://other.local/ops/alice",
            "spiffe://writ.local.evil/ops",
            "spiffe://writ.local/unix",
            "spiffe://writ.local/unix/uid/0",
            "spiffe://WRIT.local/ops",
            "not a uri",
        ] {
            assert!(
                matches!(
                    attestor.check(&id(refused)),
                    Err(AttestError::ForeignIdentity(_))
                ),
                "{refused}"
            );
        }
    }
}
