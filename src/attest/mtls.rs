//! mTLS client certificates: the identity a certificate names. The listener
//! has already verified the chain to `tls.client_ca` and the validity period
//! during the handshake; this only reads the SPIFFE ID, refusing anything
//! ambiguous.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

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
    Ok(CertIdentity {
        spiffe_id: (*uri).to_owned(),
        cert_sha256: crate::digest::sha256_hex(cert_der),
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
