//! Key-bound tokens at a resource server: a token carrying `cnf` is
//! accepted only from the holder of that key, proven by a DPoP proof made
//! for this very request (RFC 9449) or by the TLS client certificate the
//! request arrived with (RFC 8705).

pub use writ_proto::binding::Scheme;
use writ_proto::binding::{self, BindingError, Possession, certificate_thumbprint};
use writ_proto::claims::Confirmation;

use crate::VerifyError;
use crate::dpop::{self, Expected, ReplayStore};

/// How one request presented a token: what [`Verifier::verify_presented`]
/// needs to check a key-bound token.
///
/// [`Verifier::verify_presented`]: crate::Verifier::verify_presented
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    /// The access token.
    pub token: &'a str,
    /// The scheme it came with.
    pub scheme: Scheme,
    /// The `DPoP` header, if any.
    pub dpop_proof: Option<&'a str>,
    /// The request method, e.g. `GET` (the proof's `htm`).
    pub method: &'a str,
    /// The URL the client addressed, e.g. `https://orders.internal/v1/orders`
    /// (the proof's `htu`; query and fragment are ignored).
    pub url: &'a str,
    /// The DER of the TLS client certificate the request arrived with.
    pub client_certificate: Option<&'a [u8]>,
}

impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token and proof are secrets while they are valid.
        f.debug_struct("Presented")
            .field("scheme", &self.scheme)
            .field("method", &self.method)
            .field("url", &self.url)
            .field("dpop_proof", &self.dpop_proof.is_some())
            .field("client_certificate", &self.client_certificate.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> Presented<'a> {
    /// A token on its own, with nothing that could prove a binding: what
    /// [`Verifier::verify`](crate::Verifier::verify) checks.
    pub fn bearer(token: &'a str) -> Self {
        Self {
            token,
            scheme: Scheme::Bearer,
            dpop_proof: None,
            method: "",
            url: "",
            client_certificate: None,
        }
    }

    /// The token of a `method url` request from its `Authorization` and
    /// `DPoP` headers. No token, another scheme, or more than one proof is
    /// refused.
    pub fn from_headers(
        headers: &'a http::HeaderMap,
        method: &'a str,
        url: &'a str,
    ) -> Result<Self, VerifyError> {
        let value = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(VerifyError::Missing)?;
        let (scheme, token) = Scheme::split(value).ok_or(VerifyError::Missing)?;
        let values = headers.get_all("dpop").iter().map(|v| v.as_bytes());
        let dpop_proof = dpop::single_proof(values)
            .map_err(|_| VerifyError::DpopProof(dpop::DpopError::Malformed))?;
        Ok(Self {
            token,
            scheme,
            dpop_proof,
            method,
            url,
            client_certificate: None,
        })
    }

    /// With the TLS client certificate (DER) the request arrived with.
    pub fn with_client_certificate(mut self, der: &'a [u8]) -> Self {
        self.client_certificate = Some(der);
        self
    }
}

/// Checks the token's `cnf` against what the request proved, by
/// writ-proto's rule (the broker's): a token without `cnf` must not come
/// with the DPoP scheme (RFC 9449 section 7.1); a binding this SDK cannot
/// check refuses the token (fail closed).
pub(crate) fn check(
    cnf: Option<&Confirmation>,
    presented: &Presented<'_>,
    replay: &dyn ReplayStore,
    now: u64,
) -> Result<(), VerifyError> {
    let certificate = presented.client_certificate.map(certificate_thumbprint);
    let prove = || {
        let proof = presented.dpop_proof?;
        let expected = Expected {
            method: presented.method,
            uri: presented.url.split(['?', '#']).next().unwrap_or_default(),
            now,
            access_token: Some(presented.token),
        };
        Some(dpop::verify(proof, &expected, replay))
    };
    let possession = Possession {
        scheme: Some(presented.scheme),
        certificate: certificate.as_deref(),
        dpop: prove,
    };
    binding::check(cnf, possession).map_err(|e| match e {
        BindingError::Proof(e) => VerifyError::DpopProof(e),
        _ => VerifyError::KeyBinding,
    })
}
