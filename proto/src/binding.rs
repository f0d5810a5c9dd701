//! The one key-binding rule (RFC 9449 for DPoP, RFC 8705 for client
//! certificates): a token carrying `cnf` is accepted only from the holder of
//! that key. The broker applies it to writ tokens presented as credentials
//! or as subject tokens, the SDK at every resource server.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::claims::Confirmation;
use crate::dpop::DpopError;

/// The `Authorization` scheme a token was presented with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Bearer` (RFC 6750); also the scheme of certificate-bound tokens.
    Bearer,
    /// `DPoP` (RFC 9449): the request also carries a `DPoP` proof.
    Dpop,
}

impl Scheme {
    /// Splits an `Authorization` value into its scheme and token; `None`
    /// for any other scheme (case-insensitive, RFC 9110 section 11.1).
    pub fn split(authorization: &str) -> Option<(Self, &str)> {
        let (scheme, token) = authorization.split_once(' ')?;
        let scheme = if scheme.eq_ignore_ascii_case("bearer") {
            Self::Bearer
        } else if scheme.eq_ignore_ascii_case("dpop") {
            Self::Dpop
        } else {
            return None;
        };
        Some((scheme, token.trim()))
    }
}

/// Why a token's binding does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The DPoP scheme with a token bound to nothing (RFC 9449 section 7.1).
    #[error("the DPoP scheme was used with a token that is not DPoP-bound")]
    NotBound,
    /// A DPoP-bound token sent as a bearer token (RFC 9449 section 7.2).
    #[error("a DPoP-bound token must be sent with the DPoP scheme")]
    WrongScheme,
    /// Nothing on the request proves the bound key.
    #[error("the request does not prove the key the token is bound to")]
    NoProof,
    /// The request proved another key, or came with another certificate.
    #[error("the request proved another key than the token is bound to")]
    OtherKey,
    /// A binding writ cannot check (empty `cnf`, or an unknown member).
    #[error("the token is bound in a way this verifier cannot check")]
    Unsupported,
    /// The DPoP proof itself was refused.
    #[error("{0}")]
    Proof(DpopError),
}

/// What one request offers to prove a key.
pub struct Possession<'a, P> {
    /// The scheme the token came with, when it came in `Authorization`
    /// (`None` for a token sent in a form, such as a subject token).
    pub scheme: Option<Scheme>,
    /// The RFC 8705 thumbprint ([`certificate_thumbprint`]) of the TLS
    /// client certificate the request arrived with.
    pub certificate: Option<&'a str>,
    /// Verifies the request's DPoP proof (for this request, and this token
    /// if it was presented) and returns its key's RFC 7638 thumbprint;
    /// `None` when the request carries no proof. Called only for a
    /// DPoP-bound token, so a proof is remembered against replay only when
    /// it is what authenticates the request.
    pub dpop: P,
}

/// The base64url SHA-256 of a certificate's DER: its RFC 8705 `x5t#S256`.
pub fn certificate_thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// Checks a token's `cnf` against what the request proves. An unbound
/// token passes (unless sent with the DPoP scheme); every member of a
/// binding must hold; a binding this code does not know fails closed.
pub fn check<P>(
    cnf: Option<&Confirmation>,
    possession: Possession<'_, P>,
) -> Result<(), BindingError>
where
    P: FnOnce() -> Option<Result<String, DpopError>>,
{
    let Some(cnf) = cnf else {
        return match possession.scheme {
            Some(Scheme::Dpop) => Err(BindingError::NotBound),
            _ => Ok(()),
        };
    };
    if !cnf.unknown.is_empty() || (cnf.jkt.is_none() && cnf.x5t_s256.is_none()) {
        return Err(BindingError::Unsupported);
    }
    if let Some(bound) = &cnf.x5t_s256 {
        let presented = possession.certificate.ok_or(BindingError::NoProof)?;
        if presented != bound {
            return Err(BindingError::OtherKey);
        }
    }
    if let Some(bound) = &cnf.jkt {
        if possession.scheme == Some(Scheme::Bearer) {
            return Err(BindingError::WrongScheme);
        }
        let proven = (possession.dpop)()
            .ok_or(BindingError::NoProof)?
            .map_err(BindingError::Proof)?;
        if proven != *bound {
            return Err(BindingError::OtherKey);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Prover = fn() -> Option<Result<String, DpopError>>;

    fn with(
        scheme: Option<Scheme>,
        certificate: Option<&str>,
        dpop: Prover,
    ) -> Possession<'_, Prover> {
        Possession {
            scheme,
            certificate,
            dpop,
        }
    }

    fn proves_k() -> Option<Result<String, DpopError>> {
        Some(Ok("k".into()))
    }

    fn no_proof() -> Option<Result<String, DpopError>> {
        None
    }

    #[test]
    fn an_unbound_token_passes_except_with_the_dpop_scheme() {
        assert_eq!(
            check(None, with(Some(Scheme::Bearer), None, no_proof)),
            Ok(())
        );
        assert_eq!(check(None, with(None, None, no_proof)), Ok(()));
        assert_eq!(
            check(None, with(Some(Scheme::Dpop), None, proves_k)),
            Err(BindingError::NotBound)
        );
    }

    #[test]
    fn a_dpop_bound_token_needs_a_proof_of_the_same_key_and_the_dpop_scheme() {
        let cnf = Confirmation::dpop("k");
        assert_eq!(
            check(Some(&cnf), with(Some(Scheme::Dpop), None, proves_k)),
            Ok(())
        );
        assert_eq!(check(Some(&cnf), with(None, None, proves_k)), Ok(()));
        assert_eq!(
            check(Some(&cnf), with(Some(Scheme::Bearer), None, proves_k)),
            Err(BindingError::WrongScheme)
        );
        assert_eq!(
            check(Some(&cnf), with(Some(Scheme::Dpop), None, no_proof)),
            Err(BindingError::NoProof)
        );
        let other = Confirmation::dpop("k2");
        assert_eq!(
            check(Some(&other), with(Some(Scheme::Dpop), None, proves_k)),
            Err(BindingError::OtherKey)
        );
    }

    #[test]
    fn a_certificate_bound_token_needs_the_same_certificate() {
        let cert = certificate_thumbprint(b"cert");
        let cnf = Confirmation::certificate(cert.clone());
        assert_eq!(
            check(
                Some(&cnf),
                with(Some(Scheme::Bearer), Some(&cert), no_proof)
            ),
            Ok(())
        );
        let other = certificate_thumbprint(b"other");
        assert_eq!(
            check(
                Some(&cnf),
                with(Some(Scheme::Bearer), Some(&other), no_proof)
            ),
            Err(BindingError::OtherKey)
        );
        assert_eq!(
            check(Some(&cnf), with(Some(Scheme::Bearer), None, no_proof)),
            Err(BindingError::NoProof)
        );
    }

    #[test]
    fn bindings_nobody_can_check_fail_closed() {
        let empty = Confirmation::default();
        assert_eq!(
            check(Some(&empty), with(None, Some("c"), proves_k)),
            Err(BindingError::Unsupported)
        );
        let mut odd = Confirmation::dpop("k");
        odd.unknown
            .insert("x5t".into(), serde_json::Value::String("sha1".into()));
        assert_eq!(
            check(Some(&odd), with(Some(Scheme::Dpop), None, proves_k)),
            Err(BindingError::Unsupported)
        );
    }
}
