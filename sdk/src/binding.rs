//! Key-bound tokens at a resource server: a token carrying `cnf` is
//! accepted only from the holder of that key, proven by a DPoP proof made
//! for this very request (RFC 9449) or by the TLS client certificate the
//! request arrived with (RFC 8705).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::VerifyError;
use crate::dpop::{self, Expected, ReplayCache};

/// The `Authorization` scheme a token was presented with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Bearer` (RFC 6750); also the scheme of certificate-bound tokens.
    Bearer,
    /// `DPoP` (RFC 9449): the request also carries a `DPoP` proof.
    Dpop,
}

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
        let (scheme, token) = value.split_once(' ').ok_or(VerifyError::Missing)?;
        let scheme = if scheme.eq_ignore_ascii_case("bearer") {
            Scheme::Bearer
        } else if scheme.eq_ignore_ascii_case("dpop") {
            Scheme::Dpop
        } else {
            return Err(VerifyError::Missing);
        };
        let mut proofs = headers.get_all("dpop").iter();
        let dpop_proof = match (proofs.next(), proofs.next()) {
            (None, _) => None,
            (Some(one), None) => Some(
                one.to_str()
                    .map_err(|_| VerifyError::DpopProof(dpop::DpopError::Malformed))?,
            ),
            // RFC 9449 section 4.3: exactly one proof.
            (Some(_), Some(_)) => return Err(VerifyError::DpopProof(dpop::DpopError::Malformed)),
        };
        Ok(Self {
            token: token.trim(),
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

/// Checks the token's `cnf` against what the request proved. A token
/// without `cnf` must not come with the DPoP scheme (RFC 9449 section 7.1);
/// a `cnf` member this SDK cannot check refuses the token (fail closed).
pub(crate) fn check(
    claims: &Value,
    presented: &Presented<'_>,
    replay: &ReplayCache,
    now: u64,
) -> Result<(), VerifyError> {
    let cnf = match claims.get("cnf") {
        None if presented.scheme == Scheme::Dpop => return Err(VerifyError::KeyBinding),
        None => return Ok(()),
        Some(Value::Object(cnf)) if !cnf.is_empty() => cnf,
        Some(_) => return Err(VerifyError::Malformed),
    };
    for (member, bound) in cnf {
        let bound = bound.as_str().ok_or(VerifyError::Malformed)?;
        match member.as_str() {
            "jkt" => {
                let proof = match (presented.scheme, presented.dpop_proof) {
                    (Scheme::Dpop, Some(proof)) => proof,
                    _ => return Err(VerifyError::KeyBinding),
                };
                let expected = Expected {
                    method: presented.method,
                    uri: presented.url.split(['?', '#']).next().unwrap_or_default(),
                    now,
                    access_token: Some(presented.token),
                };
                let proven =
                    dpop::verify(proof, &expected, replay).map_err(VerifyError::DpopProof)?;
                if proven != bound {
                    return Err(VerifyError::KeyBinding);
                }
            }
            "x5t#S256" => {
                let certificate = presented
                    .client_certificate
                    .ok_or(VerifyError::KeyBinding)?;
                let digest = ring::digest::digest(&ring::digest::SHA256, certificate);
                if URL_SAFE_NO_PAD.encode(digest.as_ref()) != bound {
                    return Err(VerifyError::KeyBinding);
                }
            }
            _ => return Err(VerifyError::KeyBinding),
        }
    }
    Ok(())
}
